import { createHash, randomUUID } from "node:crypto";
import express, { type Request, type Router } from "express";
import { decryptAttachment, encryptAttachment, isEncryptedFile, type EncryptedFile } from "@medmesh/common";
import type { DevicePool } from "./devices.ts";
import { DriverError, asyncRoute, notFound } from "./errors.ts";

interface KnownFile {
  file: EncryptedFile;
  mimetype: string;
  size: number;
}

/**
 * Encrypted attachments by fileId. An upload is encrypted on the device (AES-CTR, as in an
 * encrypted room) and only the ciphertext goes to the homeserver; the key lives in the message.
 * Files seen in a listed message get a fileId too (derived from their mxc URL), so a receiving
 * device can download what it was sent.
 */
export class MediaFiles {
  private readonly files = new Map<string, KnownFile>();

  get(fileId: string): KnownFile | undefined {
    return this.files.get(fileId);
  }

  add(file: EncryptedFile, mimetype: string, size: number): string {
    const fileId = randomUUID();
    this.files.set(fileId, { file, mimetype, size });
    return fileId;
  }

  /** The fileId of an encrypted file in a message (registering it when new). */
  remember(file: unknown, info: unknown): string | undefined {
    if (!isEncryptedFile(file)) return undefined;
    for (const [id, known] of this.files) if (known.file.url === file.url) return id;
    const i = (info ?? {}) as { mimetype?: unknown; size?: unknown };
    const id = createHash("sha256").update(file.url).digest("hex").slice(0, 32);
    this.files.set(id, {
      file,
      mimetype: typeof i.mimetype === "string" ? i.mimetype : "application/octet-stream",
      size: typeof i.size === "number" ? i.size : 0,
    });
    return id;
  }
}

const param = (req: Request, name: string): string => String(req.params[name]);

export function mountMedia(router: Router, pool: DevicePool, media: MediaFiles, maxBytes: number): void {
  router.post(
    "/devices/:deviceId/media",
    express.raw({ type: () => true, limit: maxBytes }),
    asyncRoute(async (req, res) => {
      const { client } = pool.use(param(req, "deviceId")).requireSession();
      const plain = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const mimetype = req.headers["content-type"] ?? "application/octet-stream";
      const { ciphertext, file } = encryptAttachment(plain);
      const upload = await client.uploadContent(ciphertext, {
        type: "application/octet-stream",
        includeFilename: false,
      });
      const fileId = media.add({ ...file, url: upload.content_uri }, mimetype, plain.length);
      res.status(201).json({ fileId });
    }),
  );

  const download = asyncRoute(async (req, res) => {
    const session = pool.use(param(req, "deviceId")).requireSession();
    const fileId = param(req, "fileId");
    const known = media.get(fileId);
    if (!known) throw notFound(`file ${fileId}`);
    const mxc = /^mxc:\/\/([^/]+)\/([^/]+)$/.exec(known.file.url);
    if (!mxc) throw new DriverError(500, "BAD_FILE", "the file has no mxc URL");
    const url = new URL(
      `/_matrix/client/v1/media/download/${encodeURIComponent(mxc[1] ?? "")}/${encodeURIComponent(mxc[2] ?? "")}`,
      session.client.baseUrl,
    );
    const got = await fetch(url, { headers: { authorization: `Bearer ${session.login.accessToken}` } });
    if (!got.ok) {
      const body = (await got.json().catch(() => ({}))) as { errcode?: string; error?: string };
      throw new DriverError(got.status, body.errcode ?? "M_UNKNOWN", body.error ?? "download failed");
    }
    const plain = decryptAttachment(Buffer.from(await got.arrayBuffer()), known.file);
    res.status(200).type("application/octet-stream").send(plain);
  });
  router.get("/devices/:deviceId/media/authenticated/:fileId", download);
  router.get("/devices/:deviceId/media/:fileId", download);
}
