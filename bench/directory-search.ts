/**
 * Directory search over 10,000 verified clinicians, in one run on one network:
 *   npm run bench:directory          (BENCH_CLINICIANS=10000 BENCH_SEARCHES=2000 to change)
 * - "index": the in-process search alone (what the proxy adds on top of HTTP);
 * - "proxy": POST user_directory/search through the MedMesh proxy, answered from the verified
 *   directory (10,000 entries);
 * - "synapse": the same request straight to Synapse's loopback listener, answered by Synapse's
 *   own user directory (which holds only this network's few registered users): the HTTP floor.
 */
import { startTestNetwork } from "../tests/harness/index.ts";
import { createSearchIndex } from "../policy-module/src/directory/index.ts";

const CLINICIANS = Number(process.env.BENCH_CLINICIANS ?? 10_000);
const SEARCHES = Number(process.env.BENCH_SEARCHES ?? 2000);
const FIRST = [
  "Anna",
  "Bram",
  "Carla",
  "Daan",
  "Eva",
  "Femke",
  "Gijs",
  "Hanna",
  "Ilse",
  "Joost",
  "Karin",
  "Lars",
];
const LAST = [
  "de Vries",
  "Jansen",
  "Bakker",
  "Visser",
  "Smit",
  "Meijer",
  "de Boer",
  "Mulder",
  "Bos",
  "Vos",
  "Peters",
];

const clinicians = Array.from({ length: CLINICIANS }, (_, i) => ({
  localpart: `clin${String(i)}`,
  display_name: `${FIRST[i % FIRST.length] ?? ""} ${LAST[(i * 7) % LAST.length] ?? ""} ${String(i)}`,
  profession: i % 3 ? "physician" : "nurse",
}));
const terms = ["jansen", "anna de", "visser 12", "karin", "bos 99", "nobody-matches-this", "clin42"];

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const row = (name: string, xs: number[]): string =>
  `${name.padEnd(10)} p50 ${pct(xs, 50).toFixed(3).padStart(7)} ms   p99 ${pct(xs, 99).toFixed(3).padStart(7)} ms   (${String(xs.length)} searches)`;

const net = await startTestNetwork({
  name: "bench-directory",
  organisations: 1,
  verifiedClinicians: { 0: clinicians },
});
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const requester = await net.registerUser(org, "clin0"); // verified: first entry of the list
  const headers = { authorization: `Bearer ${requester.accessToken}`, "content-type": "application/json" };
  const search = async (base: string, term: string): Promise<number> => {
    const started = process.hrtime.bigint();
    const res = await fetch(`${base}/_matrix/client/v3/user_directory/search`, {
      method: "POST",
      headers,
      body: JSON.stringify({ search_term: term, limit: 10 }),
    });
    if (!res.ok) throw new Error(`search failed: ${String(res.status)} ${await res.text()}`);
    await res.arrayBuffer();
    return Number(process.hrtime.bigint() - started) / 1e6;
  };

  const index = createSearchIndex(
    clinicians.map((c) => ({
      user_id: `@${c.localpart}:${org.serverName}`,
      display_name: c.display_name,
      profession: c.profession,
    })),
  );
  const indexTimes: number[] = [];
  for (let i = 0; i < SEARCHES; i++) {
    const started = process.hrtime.bigint();
    index.search(terms[i % terms.length] ?? "", 10);
    indexTimes.push(Number(process.hrtime.bigint() - started) / 1e6);
  }

  for (let i = 0; i < 100; i++) await search(i % 2 ? org.synapseUrl : org.clientUrl, "warm"); // warm up both
  const times = { proxy: [] as number[], synapse: [] as number[] };
  for (let i = 0; i < SEARCHES; i++) {
    const term = terms[i % terms.length] ?? "";
    times.proxy.push(await search(org.clientUrl, term));
    times.synapse.push(await search(org.synapseUrl, term));
  }
  console.log(
    `directory search, ${String(CLINICIANS)} verified clinicians, limit 10, sequential, interleaved:`,
  );
  console.log(row("index", indexTimes));
  console.log(row("proxy", times.proxy));
  console.log(row("synapse", times.synapse));
  console.log(`target: proxy p99 <= 20 ms -> ${pct(times.proxy, 99) <= 20 ? "met" : "NOT met"}`);
} finally {
  await net.stop(false);
}
