import { encryptAttachment, MatrixRequestError } from "@medmesh/common";
import type { BridgeCrypto } from "./crypto.ts";
import type { Ghosts } from "./ghosts.ts";
import { Permanent } from "./queue.ts";

/** Client API paths that change a room's membership: `/rooms/{id}/invite|leave|kick|ban|unban`, `/join/{id}`. */
const MEMBERSHIP_PATH =
  /^\/_matrix\/client\/v3\/(?:rooms\/([^/]+)\/(?:invite|leave|kick|ban|unban)|join\/([^/?]+))/;

/**
 * What the bridge does in Matrix as a ghost: send (encrypted where the room is), redact, upload,
 * join. Matrix refusals (4xx other than rate limits) are permanent; the rest is retried.
 */
export class MatrixSide {
  private readonly encrypted = new Map<string, boolean>();
  /** Each room's joined and invited members, until a membership in it changes. */
  private readonly memberLists = new Map<string, Promise<string[]>>();
  private readonly ghosts: Ghosts;
  private readonly crypto: BridgeCrypto;
  private readonly homeserver: { url: string; asToken: string };

  constructor(ghosts: Ghosts, crypto: BridgeCrypto, homeserver: { url: string; asToken: string }) {
    this.ghosts = ghosts;
    this.crypto = crypto;
    this.homeserver = homeserver;
  }

  async call<T = Record<string, unknown>>(
    userId: string,
    method: string,
    path: string,
    body?: unknown,
    raw?: { data: Buffer; contentType: string },
  ): Promise<T> {
    const membership = MEMBERSHIP_PATH.exec(path);
    try {
      return await this.ghosts.as(userId)<T>(method, path, body, raw ? { raw } : {});
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status >= 400 && err.status < 500 && err.status !== 429)
        throw new Permanent(`Matrix refused it: ${err.message}`);
      throw err;
    } finally {
      const roomId = membership?.[1] ?? membership?.[2];
      if (roomId) this.membershipChanged(decodeURIComponent(roomId));
    }
  }

  async isEncrypted(userId: string, roomId: string): Promise<boolean> {
    const known = this.encrypted.get(roomId);
    if (known !== undefined) return known;
    const encrypted = await this.call(
      userId,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`,
    ).then(
      () => true,
      (err: unknown) => {
        if (err instanceof Permanent && /M_NOT_FOUND/.test(err.message)) return false;
        throw err;
      },
    );
    this.encrypted.set(roomId, encrypted);
    return encrypted;
  }

  markEncrypted(roomId: string): void {
    this.encrypted.set(roomId, true);
  }

  /**
   * Joined and invited members (the devices a room key is shared with). Kept per room until a
   * membership in it changes: the bridge's own joins, invites and leaves, and every m.room.member
   * event Synapse sends it (`membershipChanged`).
   */
  members(userId: string, roomId: string): Promise<string[]> {
    let list = this.memberLists.get(roomId);
    if (!list) {
      list = this.call<{ chunk: { state_key: string; content: { membership?: string } }[] }>(
        userId,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/members?not_membership=leave`,
      ).then(({ chunk }) =>
        chunk
          .filter((m) => m.content.membership === "join" || m.content.membership === "invite")
          .map((m) => m.state_key),
      );
      this.memberLists.set(roomId, list);
      void list.catch(() => {
        if (this.memberLists.get(roomId) === list) this.memberLists.delete(roomId);
      });
    }
    return list;
  }

  /** A membership in the room changed: its members are asked for again on next use. */
  membershipChanged(roomId: string): void {
    this.memberLists.delete(roomId);
  }

  /** Sends as the ghost with a deterministic transaction ID: a repeat after a crash is one event. */
  async send(userId: string, roomId: string, type: string, content: unknown, txnId: string): Promise<string> {
    let eventType = type;
    let body = content;
    if (await this.isEncrypted(userId, roomId)) {
      body = await this.crypto.encrypt(userId, roomId, await this.members(userId, roomId), type, content);
      eventType = "m.room.encrypted";
    }
    const { event_id } = await this.call<{ event_id: string }>(
      userId,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(eventType)}/${encodeURIComponent(txnId)}`,
      body,
    );
    return event_id;
  }

  async redact(userId: string, roomId: string, eventId: string, txnId: string): Promise<string> {
    const { event_id } = await this.call<{ event_id: string }>(
      userId,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(eventId)}/${encodeURIComponent(txnId)}`,
      {},
    );
    return event_id;
  }

  /**
   * Joins as the ghost. Its device exists first (made by its vendor's leader), so the members'
   * clients share the room key with it from the first message on.
   */
  async join(userId: string, roomId: string): Promise<void> {
    await this.crypto.ensureDevice(userId);
    await this.call(userId, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
  }

  /** Uploads a file for a room: as ciphertext (with its `file` object) where the room is encrypted. */
  async upload(
    userId: string,
    roomId: string,
    data: Buffer,
    contentType: string,
  ): Promise<{ url: string } | { file: Record<string, unknown> }> {
    const put = async (bytes: Buffer, type: string) =>
      (
        await this.call<{ content_uri: string }>(userId, "POST", "/_matrix/media/v3/upload", undefined, {
          data: bytes,
          contentType: type,
        })
      ).content_uri;
    if (!(await this.isEncrypted(userId, roomId))) return { url: await put(data, contentType) };
    const { ciphertext, file } = encryptAttachment(data);
    return { file: { ...file, url: await put(ciphertext, "application/octet-stream") } };
  }

  /** A file's bytes (authenticated media, as a ghost of the room). */
  async download(userId: string, mxc: string): Promise<Buffer> {
    const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc);
    if (!m?.[1] || !m[2]) throw new Permanent(`not a media URI: ${mxc}`);
    const url = new URL(
      `/_matrix/client/v1/media/download/${encodeURIComponent(m[1])}/${encodeURIComponent(m[2])}`,
      this.homeserver.url,
    );
    url.searchParams.set("user_id", userId);
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${this.homeserver.asToken}` },
      signal: AbortSignal.timeout(60_000),
    });
    if (res.status === 404) throw new Permanent(`the file ${mxc} is gone`);
    if (!res.ok) throw new Error(`media download answered ${String(res.status)}`);
    return Buffer.from(await res.arrayBuffer());
  }
}
