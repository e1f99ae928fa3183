/**
 * The load side of bench/proxy-overhead.ts, in its own process so that the client's work does not
 * share an event loop with the proxy it measures. Input: JSON in argv[2]; output: JSON on stdout.
 */
import { randomBytes } from "node:crypto";

interface Input {
  paths: { direct: string; proxy: string };
  token: string;
  roomId: string;
  sends: number;
  concurrency: number;
}
const input = JSON.parse(process.argv[2] ?? "{}") as Input;
const headers = { authorization: `Bearer ${input.token}`, "content-type": "application/json" };
let txn = 0;

async function send(base: string): Promise<number> {
  const started = process.hrtime.bigint();
  const url = `${base}/_matrix/client/v3/rooms/${encodeURIComponent(input.roomId)}/send/m.room.message/b${String(txn++)}-${randomBytes(4).toString("hex")}`;
  const res = await fetch(url, {
    method: "PUT",
    headers,
    body: JSON.stringify({ msgtype: "m.text", body: "bench" }),
  });
  if (!res.ok) throw new Error(`send failed: ${String(res.status)} ${await res.text()}`);
  await res.arrayBuffer();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const { direct, proxy } = input.paths;
for (let i = 0; i < 50; i++) await send(i % 2 ? direct : proxy); // warm up both
const latency = { direct: [] as number[], proxy: [] as number[] };
for (let i = 0; i < input.sends; i++) {
  // Interleaved, so both paths see the same machine state and the same room size.
  latency.direct.push(await send(direct));
  latency.proxy.push(await send(proxy));
}
async function throughput(base: string): Promise<number> {
  let next = 0;
  const started = Date.now();
  const perRound = input.sends / 4;
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (next++ < perRound) await send(base);
    }),
  );
  return perRound / ((Date.now() - started) / 1000);
}
const rounds = { direct: [] as number[], proxy: [] as number[] };
for (let r = 0; r < 4; r++) {
  rounds.direct.push(await throughput(direct));
  rounds.proxy.push(await throughput(proxy));
}
process.stdout.write(JSON.stringify({ latency, rounds }));
