/**
 * Message sends through the policy proxy vs. straight to Synapse, in one run on one network.
 *   npm run bench:proxy            (BENCH_SENDS=1000 BENCH_CONCURRENCY=16 to change the load)
 * The load runs in its own process (bench/send-load.ts), so the client does not compete with the
 * proxy for this process's event loop.
 * Latency: sequential sends, direct and proxied interleaved so both see the same machine state.
 * Throughput: sends with N in flight, in alternating rounds per path, averaged.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
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
  // Asynchronously: the proxy under test runs on this process's event loop.
  const load = await promisify(execFile)(
    process.execPath,
    [
      join(import.meta.dirname, "send-load.ts"),
      JSON.stringify({
        targets: {
          base: { url: org.synapseUrl, token: user.accessToken, roomId },
          test: { url: org.clientUrl, token: user.accessToken, roomId },
        },
        sends: SENDS,
        concurrency: CONCURRENCY,
      }),
    ],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  const out = JSON.parse(load.stdout) as {
    latency: { base: number[]; test: number[] };
    rounds: { base: number[]; test: number[] };
  };
  const latency = { direct: out.latency.base, proxy: out.latency.test };
  const rounds = { direct: out.rounds.base, proxy: out.rounds.test };
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
  const added = (p: number): number => q(latency.proxy, p) - q(latency.direct, p);
  console.log(
    `added latency p50 ${added(0.5).toFixed(2)} ms, p99 ${added(0.99).toFixed(2)} ms ` +
      `(pairwise differences: p50 ${q(diffs, 0.5).toFixed(2)} ms, p99 ${q(diffs, 0.99).toFixed(2)} ms); ` +
      `throughput ratio ${(tput.proxy / tput.direct).toFixed(3)} (${String(SENDS)} sends per figure)`,
  );
  console.log("targets: throughput ratio >= 0.95, added p50 <= 1 ms, added p99 <= 5 ms");
} finally {
  await net.stop(false);
}
