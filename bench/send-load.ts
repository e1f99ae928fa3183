/**
 * The load side of bench/proxy-overhead.ts and bench/synapse-module.ts, in its own process so that
 * the client's work does not share an event loop with what it measures. Input: JSON in argv[2];
 * output: JSON on stdout. Two targets, `base` and `test`, each a client URL with its own user and
 * room; `invitee` (optional) makes it also time invites (each followed by an untimed kick).
 */
import { randomBytes } from "node:crypto";

interface Target {
  url: string;
  token: string;
  roomId: string;
  invitee?: string;
}
interface Input {
  targets: { base: Target; test: Target };
  sends: number;
  concurrency: number;
  invites?: number;
}
type Name = keyof Input["targets"];
const input = JSON.parse(process.argv[2] ?? "{}") as Input;
let txn = 0;

async function call(t: Target, method: string, path: string, body: unknown): Promise<number> {
  const started = process.hrtime.bigint();
  const res = await fetch(`${t.url}/_matrix/client/v3/rooms/${encodeURIComponent(t.roomId)}${path}`, {
    method,
    headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path} failed: ${String(res.status)} ${await res.text()}`);
  await res.arrayBuffer();
  return Number(process.hrtime.bigint() - started) / 1e6;
}
const send = (name: Name): Promise<number> =>
  call(
    input.targets[name],
    "PUT",
    `/send/m.room.message/b${String(txn++)}-${randomBytes(4).toString("hex")}`,
    {
      msgtype: "m.text",
      body: "bench",
    },
  );

const names: Name[] = ["base", "test"];
for (let i = 0; i < 50; i++) await send(names[i % 2] ?? "base"); // warm up both
const latency = { base: [] as number[], test: [] as number[] };
for (let i = 0; i < input.sends; i++) {
  // Interleaved, so both see the same machine state and the same room size.
  for (const n of names) latency[n].push(await send(n));
}
async function throughput(name: Name): Promise<number> {
  let next = 0;
  const started = Date.now();
  const perRound = input.sends / 4;
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (next++ < perRound) await send(name);
    }),
  );
  return perRound / ((Date.now() - started) / 1000);
}
const rounds = { base: [] as number[], test: [] as number[] };
for (let r = 0; r < 4; r++) for (const n of names) rounds[n].push(await throughput(n));

const invites = { base: [] as number[], test: [] as number[] };
for (let i = 0; i < (input.invites ?? 0); i++) {
  for (const n of names) {
    const t = input.targets[n];
    if (!t.invitee) throw new Error(`target ${n} has no invitee`);
    invites[n].push(await call(t, "POST", "/invite", { user_id: t.invitee }));
    await call(t, "POST", "/kick", { user_id: t.invitee });
  }
}
process.stdout.write(JSON.stringify({ latency, rounds, invites }));
