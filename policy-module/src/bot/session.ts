import { createHash } from "node:crypto";
import { ensureAppserviceUser, MatrixRequestError, type SynapseAdmin } from "@medmesh/common";
import { EventStatus, type IContent, type MatrixClient } from "matrix-js-sdk";
import type { Logger as SdkLogger } from "matrix-js-sdk/lib/logger.js";
import type { Logger } from "pino";

/** A bot's Matrix session: logging in to its kept device, and the small requests around its client. */
interface SessionDeps {
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  admin: SynapseAdmin;
}

/** Answers carry a transaction ID derived from what they answer: a second try sends nothing new. */
export const txnIdFor = (key: string): string =>
  `mmbot-${createHash("sha256").update(key).digest("base64url").slice(0, 24)}`;

/**
 * Sends with a transaction ID once: a try that failed in this client (its local echo kept, the
 * ID taken) is resent as it was; one that went out answers with its event.
 */
export async function sendOnce(
  client: MatrixClient,
  roomId: string,
  content: IContent,
  txnId: string,
): Promise<string> {
  const room = client.getRoom(roomId);
  const earlier = room?.getEventForTxnId(txnId);
  if (room && earlier) {
    if (earlier.status === EventStatus.NOT_SENT) return (await client.resendEvent(earlier, room)).event_id;
    if (earlier.status === null) return earlier.getId() ?? "";
  }
  return (await client.sendMessage(roomId, content as never, txnId)).event_id;
}

/** The bot's other devices (of runs before its device was kept, or never stored) are removed. */
export async function deleteOtherDevices(d: SessionDeps, keep: string): Promise<void> {
  const path = `/_synapse/admin/v2/users/${encodeURIComponent(d.botUserId)}`;
  const { devices } = await d.admin
    .request<{ devices: { device_id: string }[] }>("GET", `${path}/devices`)
    .catch((err: unknown) => {
      if (err instanceof MatrixRequestError && err.status === 404) return { devices: [] };
      throw err;
    });
  const others = devices.map((x) => x.device_id).filter((id) => id !== keep);
  if (others.length > 0) await d.admin.request("POST", `${path}/delete_devices`, { devices: others });
}

/** Logs in to the stored device again (same ID, same keys), or to a new one on first start. */
export async function loginAsAppservice(
  d: SessionDeps,
  deviceId: string | undefined,
): Promise<{ access_token: string; device_id: string }> {
  await ensureAppserviceUser(d.homeserverUrl, d.asToken, d.botUserId.slice(1, d.botUserId.indexOf(":")));
  const res = await fetch(new URL("/_matrix/client/v3/login", d.homeserverUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${d.asToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.application_service",
      identifier: { type: "m.id.user", user: d.botUserId },
      initial_device_display_name: "MedMesh bot",
      ...(deviceId ? { device_id: deviceId } : {}),
    }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await res.json()) as { access_token?: string; device_id?: string; error?: string };
  if (!res.ok || !body.access_token || !body.device_id)
    throw new Error(`the bot could not log in: ${body.error ?? String(res.status)}`);
  return { access_token: body.access_token, device_id: body.device_id };
}

export async function download(client: MatrixClient, mxc: string, token: string): Promise<Buffer> {
  const url = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
  if (!url) throw new Error("not an mxc:// URL");
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`media download failed with ${String(res.status)}`);
  return Buffer.from(await res.arrayBuffer());
}

/** A room the bot just created appears in its sync shortly after; encrypting needs it there. */
export async function waitForRoom(client: MatrixClient, roomId: string): Promise<void> {
  for (let i = 0; i < 100 && !client.getRoom(roomId)?.hasEncryptionStateEvent(); i++)
    await new Promise((r) => setTimeout(r, 100));
}

export function sdkLogger(log: Logger): SdkLogger {
  const logger: SdkLogger = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    // Its warnings are many; those of the crypto layer say why a room cannot be encrypted to.
    warn: (...msg: unknown[]) => {
      const text = msg.map(String).join(" ");
      if (/crypto event|encrypt/i.test(text)) log.warn({ sdk: text }, "matrix-js-sdk warning in the bot");
    },
    error: (...msg: unknown[]) => {
      log.error({ sdk: msg.map(String).join(" ") }, "matrix-js-sdk error in the bot");
    },
    getChild: () => logger,
  };
  return logger;
}
