import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAuditLog, createLogger, createStore, type Store } from "@medmesh/common";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { createPeerClient } from "../directory/peer-client.ts";
import { createPeerApi } from "../peer-api.ts";
import { ProxyContext } from "../proxy/context.ts";
import { Refusal } from "../proxy/index.ts";
import { signRequest } from "../trust/request-signing.ts";
import { publicJwkOf } from "../trust/trust-list.ts";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import { createRevocationOutbox } from "./revocation-outbox.ts";
import { createRevocationReceiver, revocationNoticeCounter } from "./revocation-receiver.ts";
import { revocationTables } from "./revocation-store.ts";

const log = createLogger("test", "silent");
const { privateKey } = generateKeyPairSync("ed25519");
const key = { kid: "a-1", privateKey };
const keys = [{ ...publicJwkOf(privateKey.export({ format: "jwk" })), kid: "a-1" }];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const store = async (dir: string): Promise<Store> =>
  createStore({ type: "pglite", data_dir: dir }, { migrations: IDENTITY_MIGRATIONS });

/** Organisation B's receiving endpoint: the real peer API and receiver on a loopback port. */
async function receiver(port: number, s: Store, applied: string[]): Promise<Server> {
  const route = createRevocationReceiver({
    serverName: "b.example",
    tables: revocationTables(s.knex),
    attestationKeys: (o) => (o === "a.example" ? keys : []),
    notifications: s.notifications,
    audit: createAuditLog(s.knex),
    notices: revocationNoticeCounter(new Registry()),
    log,
    applied: (userId) => {
      applied.push(userId);
      return Promise.resolve();
    },
  });
  const api = createPeerApi({ serverName: "b.example", attestationKeys: () => keys, routes: [route] });
  const server = createServer((req, res) => {
    const ctx = new ProxyContext(
      req,
      new URL(req.url ?? "/", "http://b"),
      "federation",
      () => Promise.resolve(undefined),
      {
        bodyIdleMs: 2000,
      },
    );
    api(ctx, "a.example").then(
      (a) => res.writeHead(a.status).end(JSON.stringify(a.body)),
      (err: unknown) => res.writeHead(err instanceof Refusal ? err.status : 500).end("{}"),
    );
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return server;
}

describe("revocation outbox", () => {
  it("keeps a notice for a peer that is down across a restart, delivers it when the peer is back, and the peer applies it once", async () => {
    const dirA = await mkdtemp(join(tmpdir(), "medmesh-outbox-a-"));
    const dirB = await mkdtemp(join(tmpdir(), "medmesh-outbox-b-"));
    cleanups.push(() => rm(dirA, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
    cleanups.push(() => rm(dirB, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }));
    // A free port nobody listens on yet: B is down.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) =>
      probe.close(() => {
        r();
      }),
    );

    const outboxOn = (s: Store, metrics = new Registry()) =>
      createRevocationOutbox({
        serverName: "a.example",
        orgKey: key,
        tables: revocationTables(s.knex),
        peers: createPeerClient({
          serverName: "a.example",
          orgKey: key,
          ca: undefined,
          baseUrlOf: () => new URL(`http://127.0.0.1:${String(port)}`),
        }),
        peerServers: () => ["a.example", "b.example"],
        notifications: s.notifications,
        audit: createAuditLog(s.knex),
        config: {
          initial_backoff_seconds: 0.2,
          max_backoff_seconds: 0.5,
          give_up_hours: 1,
          timeout_ms: 1000,
        },
        notices: revocationNoticeCounter(metrics),
        log,
        metrics,
      });

    let a = await store(dirA);
    let outbox = outboxOn(a);
    await outbox.start();
    const jti = await outbox.revoked("@ann:a.example");
    // Tried again and again while B is down (backoff 0.2 s doubling to 0.5 s; a busy machine may be slower).
    const row = () => a.knex("revocation_outbox").where({ jti }).first<{ attempts: number; peer: string }>();
    await expect
      .poll(async () => (await row()).attempts, { timeout: 10_000, interval: 50 })
      .toBeGreaterThanOrEqual(2);
    expect((await row()).peer).toBe("b.example"); // never to itself
    const [count] = await a.knex("revocation_outbox").count<{ n: string }[]>({ n: "*" });
    expect(Number(count?.n)).toBe(1);
    await outbox.stop();
    await a.close();

    // A restarts while B is still down; then B comes back.
    a = await store(dirA);
    cleanups.push(() => a.close());
    outbox = outboxOn(a);
    await outbox.start();
    cleanups.push(() => outbox.stop());
    const b = await store(dirB);
    cleanups.push(() => b.close());
    const applied: string[] = [];
    const server = await receiver(port, b, applied);
    cleanups.push(
      () =>
        new Promise<void>((r) =>
          server.close(() => {
            r();
          }),
        ),
    );
    await expect.poll(() => applied.length, { timeout: 10_000, interval: 50 }).toBeGreaterThan(0);
    expect(applied).toEqual(["@ann:a.example"]);
    // B applies the notice before A has its answer: A records the delivery a moment later.
    const deliveredAt = async () =>
      (await a.knex("revocation_outbox").where({ jti }).first<{ delivered_at: Date | null }>()).delivered_at;
    await expect.poll(deliveredAt, { timeout: 10_000, interval: 50 }).not.toBeNull();

    // The same notice again (a retry after a lost answer): recorded once, applied once.
    const notice = (await a.knex("revocation_outbox").where({ jti }).first<{ notice: string }>()).notice;
    const again = await createPeerClient({
      serverName: "a.example",
      orgKey: key,
      ca: undefined,
      baseUrlOf: () => new URL(`http://127.0.0.1:${String(port)}`),
    }).postJson("b.example", "/_medmesh/identity/v1/revocations", { notice }, 1000);
    expect(again).toEqual({ applied: false });
    expect(applied).toEqual(["@ann:a.example"]);
    expect(await b.knex("received_revocations").pluck("user_id")).toEqual(["@ann:a.example"]);
    // A body that is not the one signed is refused before it is read as a notice.
    const uri = "/_medmesh/identity/v1/revocations";
    const authorization = signRequest(key, {
      method: "POST",
      uri,
      origin: "a.example",
      destination: "b.example",
      content: { notice: "something else" },
    });
    const swapped = await fetch(`http://127.0.0.1:${String(port)}${uri}`, {
      method: "POST",
      headers: { authorization, "content-type": "application/json" },
      body: JSON.stringify({ notice }),
    });
    expect(swapped.status).toBe(401);
    const audit = await b
      .knex("audit_log")
      .where({ action: "identity.revocation.received" })
      .pluck("outcome");
    expect(audit).toEqual(["applied"]);
  });
});
