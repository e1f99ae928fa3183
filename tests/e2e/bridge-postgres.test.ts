import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import knexFactory from "knex";
import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "@medmesh/deploy";
import { TestVendor } from "../harness/interop-vendor.ts";
import { roomBodies, useTestNetwork, waitForRoomEvent, type TestUser } from "../harness/index.ts";

// The bridge's store is PostgreSQL on a server of this test's own, restarted (pg_ctl restart,
// fast shutdown: every connection cut) while messages flow both ways.
const PG_DIR = `/tmp/medmesh-bridge-pg-${randomBytes(4).toString("hex")}`;
const startPostgres = () =>
  execFileSync("bash", [join(REPO_ROOT, ".ci", "start-postgres.sh"), PG_DIR, "56432"], {
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .pop()!;
/** pg_ctl on this test's server, as the postgres user when run as root (asynchronous: the
 * services under test share this process and go on meanwhile). */
async function pgCtl(...args: string[]): Promise<void> {
  const bin = execFileSync("bash", ["-c", "ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1"], {
    encoding: "utf8",
  }).trim();
  const asPostgres = process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--"] : [];
  const [cmd = "", ...rest] = [...asPostgres, `${bin}/pg_ctl`, "-D", PG_DIR, ...args];
  await promisify(execFile)(cmd, rest);
}
const serverUrl = startPostgres();
const storeUrl = new URL(serverUrl);
storeUrl.pathname = "/medmesh_bridge_restart";
const admin = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
await admin.raw("CREATE DATABASE medmesh_bridge_restart");
await admin.destroy();
afterAll(async () => {
  await pgCtl("stop", "-m", "immediate");
  rmSync(PG_DIR, { recursive: true, force: true });
});

const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const net = useTestNetwork({
  name: "bridge-postgres",
  organisations: 1,
  organisationSettings: {
    0: { bridge_vendors: [vendor.setting], store: { type: "postgres", url: storeUrl.toString() } },
  },
});
const org = () => net().orgs[0]!;
const MESSAGES = 40;

/** Restarts PostgreSQL (every connection of the store is cut) after `afterMs`. */
async function restartPostgresAfter(afterMs: number): Promise<void> {
  await new Promise((r) => setTimeout(r, afterMs));
  await pgCtl("restart", "-m", "fast", "-w", "-l", join(PG_DIR, "server.log"));
}

describe("bridge: a PostgreSQL restart while messages flow", () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;

  it("sets up a portal", async () => {
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    roomId = await vendor.openConversation(
      { conversation_id: "pg", kind: "direct", creator: "anna", members: ["anna", alice.userId] },
      client,
    );
  });

  it("vendor → Matrix: every message arrives once, in order", async () => {
    const texts = Array.from({ length: MESSAGES }, (_, i) => `v${String(i + 1).padStart(3, "0")}`);
    const restarting = restartPostgresAfter(300);
    const retries = await vendor.sendTexts("pg", "anna", texts, 25);
    await restarting;
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === texts.at(-1), {
      description: "the last vendor message",
      timeoutMs: 120_000,
    });
    const bodies = (await roomBodies(client, roomId)).filter((b) => /^v\d{3}$/.test(b));
    expect(bodies).toEqual(texts);
    // The restart was felt: the bridge refused (5xx) while its store was away, and the vendor retried.
    expect(retries).toBeGreaterThan(0);
  });

  it("Matrix → vendor: every message arrives once, in order", async () => {
    const texts = Array.from({ length: MESSAGES }, (_, i) => `m${String(i + 1).padStart(3, "0")}`);
    const restarting = restartPostgresAfter(300);
    for (const text of texts) await client.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    await restarting;
    await vendor.delivered((e) => e.text === texts.at(-1), "the last Matrix message at the vendor", 120_000);
    const arrived = vendor.texts(/^m\d{3}$/);
    expect(arrived).toEqual(texts);
    const bridge = org().services.find((s) => s.name === "bridge")!;
    const health = await fetch(`${bridge.url}/health`);
    expect(health.status).toBe(200);
  });
});
