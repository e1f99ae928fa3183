/**
 * The load side of bench/workers.ts, in its own process (the proxy under test runs in the
 * parent's event loop). Input: JSON in argv[2] — one client URL (the policy proxy), a token and a
 * room per sender; output: JSON on stdout with per-send latencies (one sender alone, and all
 * senders at once) and the sends/s of all senders at once, each in its own room as its own user.
 */
import { randomBytes } from "node:crypto";

interface Sender {
  token: string;
  roomId: string;
}
interface Input {
  url: string;
  senders: Sender[];
  sequential: number;
  perSender: number;
}
const input = JSON.parse(process.argv[2] ?? "{}") as Input;
let txn = 0;

async function send(s: Sender): Promise<number> {
  const started = process.hrtime.bigint();
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/w${String(txn++)}-${randomBytes(4).toString("hex")}`;
  const res = await fetch(`${input.url}${path}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${s.token}`, "content-type": "application/json" },
    body: JSON.stringify({ msgtype: "m.text", body: "bench" }),
  });
  if (!res.ok) throw new Error(`send failed: ${String(res.status)} ${await res.text()}`);
  await res.arrayBuffer();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const first = input.senders[0];
if (!first) throw new Error("no senders");
for (const s of input.senders) for (let i = 0; i < 5; i++) await send(s); // warm up every path
const latency: number[] = [];
for (let i = 0; i < input.sequential; i++) latency.push(await send(first));
const loaded: number[] = [];
const started = Date.now();
await Promise.all(
  input.senders.map(async (s) => {
    for (let i = 0; i < input.perSender; i++) loaded.push(await send(s));
  }),
);
const seconds = (Date.now() - started) / 1000;
process.stdout.write(
  JSON.stringify({
    latency,
    loaded,
    sendsPerSecond: (input.senders.length * input.perSender) / seconds,
    seconds,
  }),
);
