/**
 * Message sends through the policy proxy vs. straight to Synapse, in one run on one network.
 *   npm run bench:proxy            (BENCH_SENDS=1000 BENCH_CONCURRENCY=16 to change the load)
 * Latency: sequential sends, direct and proxied interleaved so both see the same machine state.
 * Throughput: sends with N in flight, in alternating rounds per path, averaged.
 */
import { randomBytes } from "node:crypto";
import { startTestNetwork } from "../tests/harness/index.ts";

const SENDS = Number(process.env.BENCH_SENDS ?? 600);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

const net = await startTestNetwork({ name: "bench-proxy", organisations: 1 });
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const user = await net.registerUser(org);
  const headers = { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" };
  const created = await fetch(`${org.clientUrl}/_matrix/client/v3/createRoom`, {
    method: "POST",
    headers,
    body: "{}",
  });
  const { room_id: roomId } = (await created.json()) as { room_id: string };
  let txn = 0;
  const send = async (base: string): Promise<number> => {
    const started = process.hrtime.bigint();
    const url = `${base}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${String(txn++)}-${randomBytes(4).toString("hex")}`;
    const res = await fetch(url, {
      method: "PUT",
      headers,
      body: JSON.stringify({ msgtype: "m.text", body: "bench" }),
    });
    if (!res.ok) throw new Error(`send failed: ${String(res.status)} ${await res.text()}`);
    await res.arrayBuffer();
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  const paths = { direct: org.synapseUrl, proxy: org.clientUrl };

  for (let i = 0; i < 50; i++) await send(i % 2 ? paths.direct : paths.proxy); // warm up both
  const latency = { direct: [] as number[], proxy: [] as number[] };
  for (let i = 0; i < SENDS; i++) {
    latency.direct.push(await send(paths.direct));
    latency.proxy.push(await send(paths.proxy));
  }
  const throughput = async (base: string): Promise<number> => {
    let next = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < SENDS / 4) await send(base);
      }),
    );
    return SENDS / 4 / ((Date.now() - started) / 1000);
  };
  // Alternating rounds: the room grows as we send, so neither path may get all the early sends.
  const rounds = { direct: [] as number[], proxy: [] as number[] };
  for (let r = 0; r < 4; r++) {
    rounds.direct.push(await throughput(paths.direct));
    rounds.proxy.push(await throughput(paths.proxy));
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const tput = { direct: mean(rounds.direct), proxy: mean(rounds.proxy) };
  const q = (xs: number[], p: number): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  };
  const diffs = latency.proxy.map((p, i) => p - (latency.direct[i] ?? 0));
  const row = (label: string, d: string, p: string): void => {
    console.log(`${label.padEnd(34)}${d.padStart(14)}${p.padStart(14)}`);
  };
  row("", "Synapse alone", "via proxy");
  row("send latency p50 (ms)", q(latency.direct, 0.5).toFixed(2), q(latency.proxy, 0.5).toFixed(2));
  row("send latency p99 (ms)", q(latency.direct, 0.99).toFixed(2), q(latency.proxy, 0.99).toFixed(2));
  row(`throughput, ${String(CONCURRENCY)} in flight (msg/s)`, tput.direct.toFixed(0), tput.proxy.toFixed(0));
  console.log(
    `added latency (pairwise) p50 ${q(diffs, 0.5).toFixed(2)} ms, p99 ${q(diffs, 0.99).toFixed(2)} ms; ` +
      `throughput ratio ${(tput.proxy / tput.direct).toFixed(3)} (${String(SENDS)} sends per figure)`,
  );
} finally {
  await net.stop(false);
}
