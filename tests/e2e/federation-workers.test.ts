import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { useTestNetwork, WORKER_TOPOLOGY } from "../harness/index.ts";
import { federationSuite } from "./federation.suite.ts";

// The federation and encrypted-room suite, unchanged, with organisation A on Synapse workers.
const net = useTestNetwork({ name: "federation-workers", workers: { 0: WORKER_TOPOLOGY } });
federationSuite(net, "an organisation on Synapse workers federates with a single-process one");

describe("the worker topology did the work", () => {
  it("spread the requests over the workers, and the workers sent federation and appservice traffic", async () => {
    const a = net().orgs[0]!;
    const processes = a.workers?.workers ?? [];
    expect(processes.map((w) => w.spec.name)).toEqual([
      "generic1",
      "generic2",
      "event_persister1",
      "federation_sender1",
      "media_repository1",
      "appservice1",
    ]);
    const log = (name: string) =>
      name === "main"
        ? readFile(a.paths.logFile, "utf8")
        : readFile(processes.find((w) => w.spec.name === name)!.logFile, "utf8");
    // Requests a process answered, from Synapse's access log: {user} … "GET /path HTTP/1.1".
    const served = async (name: string) =>
      [...(await log(name)).matchAll(/\{(\S*)\} Processed request: .* "(GET|PUT|POST|DELETE) ([^ ?]+)/g)].map(
        (m) => ({ user: m[1]!, request: `${m[2]!} ${m[3]!}` }),
      );
    const generic = { generic1: await served("generic1"), generic2: await served("generic2") };
    // Stateless reads are spread: both generic workers answered the clients.
    for (const [name, requests] of Object.entries(generic)) {
      expect(
        requests.filter((r) => r.request.startsWith("GET /_matrix/client/")).length,
        name,
      ).toBeGreaterThan(0);
    }
    // /sync sticks to one worker per user.
    const syncedOn = new Map<string, Set<string>>();
    for (const [name, requests] of Object.entries(generic)) {
      for (const r of requests.filter((x) => x.request.endsWith("/sync"))) {
        syncedOn.set(r.user, (syncedOn.get(r.user) ?? new Set()).add(name));
      }
    }
    expect(syncedOn.size).toBeGreaterThan(0);
    for (const [user, workers] of syncedOn) expect([...workers], `${user}'s /sync`).toHaveLength(1);
    expect(
      (await served("main")).filter((r) => r.request.endsWith("/sync") && r.user.startsWith("@user-")),
    ).toEqual([]);
    // The to_device stream's writer got the room keys sent to devices.
    expect(generic.generic1.some((r) => r.request.includes("/sendToDevice/"))).toBe(true);
    // The event persister persisted the events the generic workers created.
    expect(
      (await served("event_persister1")).some((r) => r.request.includes("/replication/send_events/")),
    ).toBe(true);
    // Outbound federation went through the federation sender, not the main process.
    const sent = /PUT matrix-federation:\/\/\S+\/_matrix\/federation\/v1\/send\//;
    expect(await log("federation_sender1")).toMatch(sent);
    expect(await log("main")).not.toMatch(sent);
    // The policy module is an appservice: its transactions came from the appservice worker.
    const transactions = `PUT ${a.policyModuleUrl}/_matrix/app/v1/transactions/`;
    expect(await log("appservice1")).toContain(transactions);
    expect(await log("main")).not.toContain(transactions);
  });
});
