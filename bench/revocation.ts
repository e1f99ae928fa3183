/**
 * Revocation propagation to many peer organisations, simulated on this machine:
 *   MEDMESH_TEST_POSTGRES_URL=… npm run bench:revocation        (BENCH_PEERS=50 BENCH_ROUNDS=3)
 *
 * One sending organisation (its real outbox: a store on PostgreSQL, signed notices, the peer
 * client's signed POSTs) and BENCH_PEERS receiving organisations, each with its own Ed25519 key
 * (on a generated key map standing in for the signed trust list), its own PostgreSQL database and
 * its own HTTP listener in this process, answering through the real peer API (request signature
 * over the body) and revocation receiver (notice signature, issuer, once per jti, recorded,
 * audited). Not included: TLS (the listeners are plain HTTP on loopback), the proxy's trust-list
 * gate, and the receivers' Synapse calls to rewrite badges (no rooms). Measured: from the
 * revocation (the outbox's `revoked` call) until the last receiver has recorded and applied it.
 */
import { generateKeyPairSync, randomBytes, type JsonWebKey } from "node:crypto";
import { createServer, type Server } from "node:http";
import knexFactory from "knex";
import { createAuditLog, createLogger, createStore, type Store } from "@medmesh/common";
import { Registry } from "prom-client";
import { createPeerClient } from "../policy-module/src/directory/peer-client.ts";
import { IDENTITY_MIGRATIONS } from "../policy-module/src/identity/migrations.ts";
import { createRevocationOutbox } from "../policy-module/src/identity/revocation-outbox.ts";
import {
  createRevocationReceiver,
  revocationNoticeCounter,
} from "../policy-module/src/identity/revocation-receiver.ts";
import { revocationTables } from "../policy-module/src/identity/revocation-store.ts";
import { createPeerApi } from "../policy-module/src/peer-api.ts";
import { ProxyContext } from "../policy-module/src/proxy/context.ts";
import { Refusal } from "../policy-module/src/proxy/index.ts";
import { publicJwkOf } from "../policy-module/src/trust/trust-list.ts";
import type { OrgKey } from "../policy-module/src/trust/request-signing.ts";

const PEERS = Number(process.env.BENCH_PEERS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const serverUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
if (!serverUrl) {
  process.stderr.write(
    "bench:revocation needs MEDMESH_TEST_POSTGRES_URL (.ci/start-postgres.sh prints one)\n",
  );
  process.exit(2);
}
const log = createLogger("bench", "silent");

const keyOf = (name: string): { key: OrgKey; jwk: JsonWebKey } => {
  const { privateKey } = generateKeyPairSync("ed25519");
  const kid = `${name}-1`;
  return { key: { kid, privateKey }, jwk: { ...publicJwkOf(privateKey.export({ format: "jwk" })), kid } };
};

const admin = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
const databases: string[] = [];
const openStore = async (): Promise<Store> => {
  const name = `medmesh_bench_rev_${randomBytes(5).toString("hex")}`;
  await admin.raw(`CREATE DATABASE ${name}`);
  databases.push(name);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return createStore(
    { type: "postgres", url: url.toString(), pool_max: 1 },
    { migrations: IDENTITY_MIGRATIONS },
  );
};

const sender = "a.bench";
const senderKey = keyOf(sender);
const peerNames = Array.from({ length: PEERS }, (_, i) => `peer${String(i)}.bench`);
const keys = new Map<string, JsonWebKey[]>([[sender, [senderKey.jwk]]]);
const applied = new Map<string, (peer: string) => void>();
let waiting: { left: Set<string>; done: () => void } | undefined;

const servers: Server[] = [];
const stores: Store[] = [];
const ports = new Map<string, number>();
try {
  const started = Date.now();
  for (const peer of peerNames) {
    const store = await openStore();
    stores.push(store);
    const metrics = new Registry();
    const route = createRevocationReceiver({
      serverName: peer,
      tables: revocationTables(store.knex),
      attestationKeys: (s) => keys.get(s) ?? [],
      notifications: store.notifications,
      audit: createAuditLog(store.knex),
      notices: revocationNoticeCounter(metrics),
      log,
      applied: (userId) => {
        applied.get(userId)?.(peer);
        return Promise.resolve();
      },
    });
    const api = createPeerApi({
      serverName: peer,
      attestationKeys: (s) => keys.get(s) ?? [],
      routes: [route],
    });
    const server = createServer((req, res) => {
      const ctx = new ProxyContext(
        req,
        new URL(req.url ?? "/", "http://x"),
        "federation",
        () => Promise.resolve(undefined),
        {
          bodyIdleMs: 5000,
        },
      );
      api(ctx, sender)
        .then((answer) => {
          res
            .writeHead(answer.status, { "content-type": "application/json" })
            .end(JSON.stringify(answer.body));
        })
        .catch((err: unknown) => {
          const r = err instanceof Refusal ? err : undefined;
          res
            .writeHead(r?.status ?? 500, { "content-type": "application/json" })
            .end(JSON.stringify({ errcode: r?.errcode ?? "M_UNKNOWN", error: (err as Error).message }));
        });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    ports.set(peer, address.port);
    servers.push(server);
  }
  const senderStore = await openStore();
  stores.push(senderStore);
  const outbox = createRevocationOutbox({
    serverName: sender,
    orgKey: senderKey.key,
    tables: revocationTables(senderStore.knex),
    peers: createPeerClient({
      serverName: sender,
      orgKey: senderKey.key,
      ca: undefined,
      baseUrlOf: (s) => new URL(`http://127.0.0.1:${String(ports.get(s))}`),
    }),
    peerServers: () => peerNames,
    notifications: senderStore.notifications,
    audit: createAuditLog(senderStore.knex),
    config: { initial_backoff_seconds: 1, max_backoff_seconds: 30, give_up_hours: 1, timeout_ms: 5000 },
    notices: revocationNoticeCounter(new Registry()),
    log,
    metrics: new Registry(),
  });
  await outbox.start();
  process.stdout.write(
    `${String(PEERS)} receiving organisations ready in ${String(Date.now() - started)} ms\n`,
  );

  const results: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const userId = `@clinician${String(round)}:${sender}`;
    const done = new Promise<void>((resolve) => {
      waiting = { left: new Set(peerNames), done: resolve };
    });
    applied.set(userId, (peer) => {
      waiting?.left.delete(peer);
      if (waiting?.left.size === 0) waiting.done();
    });
    const t0 = process.hrtime.bigint();
    await outbox.revoked(userId);
    await done;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    results.push(ms);
    process.stdout.write(
      `round ${String(round + 1)}: last of ${String(PEERS)} peers applied after ${ms.toFixed(1)} ms\n`,
    );
  }
  await outbox.stop();
  results.sort((x, y) => x - y);
  process.stdout.write(
    `revocation propagation to ${String(PEERS)} peer organisations: median ${(results[Math.floor(results.length / 2)] ?? 0).toFixed(1)} ms, ` +
      `worst ${(results[results.length - 1] ?? 0).toFixed(1)} ms (until the last one applied it)\n`,
  );
} finally {
  for (const s of servers) s.close();
  for (const s of stores) await s.close();
  for (const name of databases) await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.destroy();
}
