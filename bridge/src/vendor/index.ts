import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError, createLogger, errorMiddleware } from "@medmesh/common";
import express, { type Request } from "express";
import type { Logger } from "pino";
import { MEDIA_PATH } from "../interop/server.ts";
import { restApi } from "./api.ts";
import { Downloads, Outbox } from "./outbox.ts";
import { VendorStore } from "./store.ts";
import { webhookHandlers, type BrokenFlag } from "./webhook.ts";

export type { BrokenFlag } from "./webhook.ts";

export const WEBHOOK_PATH = "/webhook";

export interface ReferenceVendorOptions {
  /** The SQLite file (created when missing); the same file after a restart carries on. */
  dataFile: string;
  listen: { host: string; port: number };
  /** How MedMesh addresses this vendor (signatures cover the exact URI). Default: the listen address. */
  publicUrl?: string;
  /** Lower-case letters, digits and '-'; prefixes the IDs it makes up. */
  vendorId: string;
  /** The keyid of its signatures, as configured at MedMesh. */
  keyId: string;
  /** Its Ed25519 private key. */
  privateKey: KeyObject;
  medmesh: { url: string; keyId: string; publicKey: JsonWebKey };
  log?: Logger;
  /** Switch single webhook checks off (to show that the conformance kit notices). */
  broken?: Partial<Record<BrokenFlag, boolean>>;
}

export interface RunningReferenceVendor {
  /** Its base URL: the REST API is under `${url}/api`. */
  url: string;
  /** The URL to configure at MedMesh as this vendor's `webhook_url`. */
  webhookUrl: string;
  stop(): Promise<void>;
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", ""]);

/**
 * Starts the reference vendor: a small messenger that speaks MedMesh's interop API from the
 * vendor's side (docs/interop-api.md) — its REST API for its own users, a verified, replay-proof,
 * deduplicating webhook, and a persistent outbox towards MedMesh. See bridge/src/vendor/README.md.
 */
export async function startReferenceVendor(opts: ReferenceVendorOptions): Promise<RunningReferenceVendor> {
  if (!/^[a-z0-9-]{1,32}$/.test(opts.vendorId))
    throw new Error(`vendorId: "${opts.vendorId}" is not 1–32 lower-case letters, digits and '-'`);
  if (opts.privateKey.type !== "private" || opts.privateKey.asymmetricKeyType !== "ed25519")
    throw new Error("privateKey: an Ed25519 private key is required");
  let medmeshKey: KeyObject;
  try {
    medmeshKey = createPublicKey({ key: opts.medmesh.publicKey, format: "jwk" });
  } catch (err) {
    throw new Error(`medmesh.publicKey: not a usable public JWK (${(err as Error).message})`, { cause: err });
  }
  if (medmeshKey.asymmetricKeyType !== "ed25519")
    throw new Error(
      `medmesh.publicKey: an Ed25519 key is required, not ${String(medmeshKey.asymmetricKeyType)}`,
    );
  let medmeshUrl: string;
  try {
    medmeshUrl = new URL(opts.medmesh.url).toString().replace(/\/+$/, "");
  } catch {
    throw new Error(`medmesh.url: "${opts.medmesh.url}" is not a URL`);
  }
  const log = opts.log ?? createLogger(`vendor-${opts.vendorId}`);
  const broken = opts.broken ?? {};
  const brokenOn = Object.entries(broken)
    .filter(([, on]) => on)
    .map(([flag]) => flag);
  if (brokenOn.length > 0)
    log.warn({ broken: brokenOn }, "deliberately broken: webhook checks are switched off");

  const store = new VendorStore(opts.dataFile);
  const signer = { keyId: opts.keyId, privateKey: opts.privateKey };
  const outbox = new Outbox(store, signer, log);
  const downloads = new Downloads(
    store,
    signer,
    (mediaId) => `${medmeshUrl}${MEDIA_PATH}/${encodeURIComponent(mediaId)}`,
    log,
  );

  let base = opts.publicUrl?.replace(/\/+$/, "");
  const targetUri = (req: Request): string =>
    `${base ?? `http://${req.headers.host ?? "localhost"}`}${req.originalUrl}`;

  const app = express();
  app.disable("x-powered-by");
  app.set("query parser", "simple");
  app.get("/health", (_req, res) => {
    res.json({ status: "ok", vendor: opts.vendorId, outbox: outbox.counts() });
  });
  app.post(
    WEBHOOK_PATH,
    ...webhookHandlers({
      store,
      medmesh: { keyId: opts.medmesh.keyId, key: medmeshKey },
      targetUri,
      broken,
      log,
      onStored: (event) => {
        if (event.type === "message" && event.file) downloads.wake();
      },
    }),
  );
  app.use("/api", restApi({ store, outbox, vendorId: opts.vendorId, medmeshUrl, log }));
  app.use((req, _res, next) => {
    next(new ApiError("M_UNRECOGNIZED", `Unrecognized request: ${req.method} ${req.path}`));
  });
  app.use(errorMiddleware(log));

  const server: Server = createServer(app);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.listen.port, opts.listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    store.close();
    throw new Error(
      `listen: cannot listen on ${opts.listen.host}:${String(opts.listen.port)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const port = (server.address() as AddressInfo).port;
  const host = opts.listen.host.includes(":") ? `[${opts.listen.host}]` : opts.listen.host;
  // Behind a wildcard address the URI MedMesh signed is only known from its Host header.
  if (base === undefined && !WILDCARD_HOSTS.has(opts.listen.host)) base = `http://${host}:${String(port)}`;
  const url = base ?? `http://${WILDCARD_HOSTS.has(opts.listen.host) ? "127.0.0.1" : host}:${String(port)}`;

  outbox.start();
  downloads.start();
  log.info(
    { url, webhook: `${url}${WEBHOOK_PATH}`, medmesh: medmeshUrl, key_id: opts.keyId },
    "reference vendor started",
  );

  let stopping: Promise<void> | undefined;
  return {
    url,
    webhookUrl: `${url}${WEBHOOK_PATH}`,
    stop: () =>
      (stopping ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => {
            resolve();
          });
          server.closeAllConnections();
        });
        await Promise.all([outbox.stop(), downloads.stop()]);
        store.close();
        log.info("reference vendor stopped");
      })()),
  };
}
