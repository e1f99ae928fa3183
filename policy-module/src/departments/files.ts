import { encryptAttachment } from "@medmesh/common";
import type { MatrixClient } from "matrix-js-sdk";
import type { BotContent, BotMessage } from "../bot/index.ts";

/** A file larger than the organisation's Synapse takes (`max_upload_size`). */
export class FileTooLarge extends Error {
  override name = "FileTooLarge";
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super(`a file of ${String(size)} bytes is larger than the upload limit of ${String(limit)} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

const mb = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
export const tooLargeText = (name: string, e: FileTooLarge): string =>
  `Your file (${mb(e.size)}) is larger than ${mb(e.limit)}, the largest ${name} can pass on: it was not passed on. Please send a smaller one.`;

/**
 * Files and images relayed by a department account: the sender's attachment is decrypted (the
 * account reads the room), then uploaded again under a fresh key for the room it goes to — a desk,
 * or the outside conversation — so neither room's members get the other room's keys. A room
 * without encryption gets the plain file. Synapse's upload limit (`m.upload.size`) is checked
 * before the download (the size the sender gave) and after it (the real size); Synapse's own
 * refusal (413) counts the same.
 */
export function createFileRelay(client: MatrixClient) {
  let limit: Promise<number | undefined> | undefined;
  const maxUpload = (): Promise<number | undefined> =>
    (limit ??= client.getMediaConfig(true).then(
      (c) => c["m.upload.size"],
      () => {
        limit = undefined; // asked again next time
        return undefined;
      },
    ));
  const upload = async (data: Buffer, type: string, size: number, max: number | undefined) => {
    try {
      return (await client.uploadContent(data, { type, includeFilename: false })).content_uri;
    } catch (err) {
      if ((err as { httpStatus?: number }).httpStatus === 413) throw new FileTooLarge(size, max ?? size);
      throw err;
    }
  };
  return {
    /** The event content for `roomId`, the file uploaded again (encrypted where the room is). */
    async content(m: BotMessage & { kind: "file" }, roomId: string, body: string): Promise<BotContent> {
      const max = await maxUpload();
      if (max !== undefined && m.size > max) throw new FileTooLarge(m.size, max);
      const data = await m.download();
      if (max !== undefined && data.length > max) throw new FileTooLarge(data.length, max);
      const info = { mimetype: m.contentType, size: data.length };
      if (!(client.getRoom(roomId)?.hasEncryptionStateEvent() ?? true))
        return { msgtype: m.msgtype, body, info, url: await upload(data, m.contentType, data.length, max) };
      const { ciphertext, file } = encryptAttachment(data);
      const url = await upload(ciphertext, "application/octet-stream", data.length, max);
      return { msgtype: m.msgtype, body, info, file: { ...file, url } };
    },
  };
}
