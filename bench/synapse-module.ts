/**
 * Synapse with MedMesh's module (policy-module/synapse-module) vs. the same Synapse without it, in
 * one run: two organisations of one test network, the second's Synapse restarted with `modules:`
 * removed. Requests go straight to each Synapse, so the proxy is not part of the figures.
 *   npm run bench:module            (BENCH_SENDS=600 BENCH_CONCURRENCY=16 BENCH_INVITES=200)
 * The load runs in its own process (bench/send-load.ts).
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import type { RunningOrganisation } from "@medmesh/deploy";
import { startTestNetwork, type TestNetwork } from "../tests/harness/index.ts";

const SENDS = Number(process.env.BENCH_SENDS ?? 600);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const INVITES = Number(process.env.BENCH_INVITES ?? 200);

const net = await startTestNetwork({ name: "bench-module", organisations: 2 });
try {
  const [withModule, alone] = net.orgs;
  if (!withModule || !alone) throw new Error("two organisations expected");
  const hs = parse(readFileSync(alone.paths.homeserverYaml, "utf8")) as Record<string, unknown>;
  delete hs.modules;
  writeFileSync(alone.paths.homeserverYaml, stringify(hs));
  await alone.synapse.restart();

  const target = async (net: TestNetwork, org: RunningOrganisation) => {
    const user = await net.registerUser(org);
    const invitee = await net.registerUser(org);
    const res = await fetch(`${org.synapseUrl}/_matrix/client/v3/createRoom`, {
      method: "POST",
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
      body: JSON.stringify({ preset: "private_chat" }),
    });
    if (!res.ok)
      throw new Error(`createRoom on ${org.serverName}: ${String(res.status)} ${await res.text()}`);
    const { room_id: roomId } = (await res.json()) as { room_id: string };
    return { url: org.synapseUrl, token: user.accessToken, roomId, invitee: invitee.userId };
  };
  const testTarget = await target(net, withModule);
  const decisionInviter = (await net.registerUser(withModule)).userId;
  const decisionInvitee = testTarget.invitee;
  const load = await promisify(execFile)(
    process.execPath,
    [
      join(import.meta.dirname, "send-load.ts"),
      JSON.stringify({
        targets: { base: await target(net, alone), test: testTarget },
        sends: SENDS,
        concurrency: CONCURRENCY,
        invites: INVITES,
      }),
    ],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  // The policy module's own share: the same invite question asked straight from here.
  const token = readFileSync(withModule.paths.decisionToken, "utf8").trim();
  const ask = async (): Promise<number> => {
    const started = process.hrtime.bigint();
    const res = await fetch(`${withModule.policyModuleUrl}/_medmesh/decide/v1/invite`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        inviter: decisionInviter,
        invitee: decisionInvitee,
        room_id: "!r:x",
        via: "local",
      }),
    });
    await res.arrayBuffer();
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  const decisions: number[] = [];
  for (let i = 0; i < INVITES; i++) decisions.push(await ask());
  type Pair = { base: number[]; test: number[] };
  const { latency, rounds, invites } = JSON.parse(load.stdout) as {
    latency: Pair;
    rounds: Pair;
    invites: Pair;
  };
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const q = (xs: number[], p: number): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  };
  const row = (label: string, a: string, b: string): void => {
    console.log(`${label.padEnd(36)}${a.padStart(14)}${b.padStart(14)}`);
  };
  const tput = { base: mean(rounds.base), test: mean(rounds.test) };
  row("", "Synapse alone", "with module");
  row("send latency p50 (ms)", q(latency.base, 0.5).toFixed(2), q(latency.test, 0.5).toFixed(2));
  row("send latency p99 (ms)", q(latency.base, 0.99).toFixed(2), q(latency.test, 0.99).toFixed(2));
  row(`throughput, ${String(CONCURRENCY)} in flight (msg/s)`, tput.base.toFixed(0), tput.test.toFixed(0));
  row("invite latency p50 (ms)", q(invites.base, 0.5).toFixed(2), q(invites.test, 0.5).toFixed(2));
  row("invite latency p99 (ms)", q(invites.base, 0.99).toFixed(2), q(invites.test, 0.99).toFixed(2));
  row("decision API alone p50 (ms)", "", q(decisions, 0.5).toFixed(2));
  console.log(
    `send throughput ratio ${(tput.test / tput.base).toFixed(3)} (${String(SENDS)} sends per figure); ` +
      `invite added latency p50 ${(q(invites.test, 0.5) - q(invites.base, 0.5)).toFixed(2)} ms ` +
      `(${String(INVITES)} invites each)`,
  );
  console.log("targets: send throughput ratio >= 0.97, invite added latency p50 <= 3 ms");
} finally {
  await net.stop(false);
}
