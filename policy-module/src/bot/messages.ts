import { decryptAttachment, isEncryptedFile } from "@medmesh/common";
import { EventType, MsgType, type MatrixEvent } from "matrix-js-sdk";
import type { BotMessage } from "./bot.ts";

/** What a (decrypted) room event says to the bot, or undefined for anything it does not read. */
export function botMessage(
  event: MatrixEvent,
  sender: string,
  roomId: string,
  eventId: string,
  download: (mxc: string) => Promise<Buffer>,
): BotMessage | undefined {
  if (event.getType() !== (EventType.RoomMessage as string)) return undefined;
  const content = event.getContent<{
    msgtype?: string;
    body?: string;
    url?: string;
    file?: unknown;
    info?: { mimetype?: string; size?: number };
  }>();
  if (content.msgtype === MsgType.Text && typeof content.body === "string")
    return { kind: "text", sender, roomId, eventId, body: content.body };
  if (content.msgtype !== MsgType.Image && content.msgtype !== MsgType.File) return undefined;
  const file = content.file;
  const mxc = isEncryptedFile(file) ? file.url : content.url;
  if (!mxc) return undefined;
  return {
    kind: "file",
    sender,
    roomId,
    eventId,
    msgtype: content.msgtype,
    name: typeof content.body === "string" && content.body ? content.body : "file",
    contentType: content.info?.mimetype ?? "application/octet-stream",
    size: content.info?.size ?? 0,
    download: async () => {
      const data = await download(mxc);
      return isEncryptedFile(file) ? decryptAttachment(data, file) : data;
    },
  };
}
