import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createListenerApp } from "../http/service.ts";
import { ApiError } from "../http/errors.ts";
import { createStore, type KnexStore } from "../store/store.ts";
import { storeBackends } from "../store/test-backends.ts";
import { createLeadership, LeadershipLost } from "./leader.ts";
import { createLeaderCalls, leaderCallsRouteGroup, type LeaderCalls } from "./leader-calls.ts";

const log = pino({ level: "silent" });
const backend = storeBackends()[0]!; // PGlite: one process, two replicas on one store
const SECRET = "the registration's as_token";

/** A replica: its internal listener (the calls' route group only) and its leadership of "bots". */
async function replica(store: KnexStore, name: string, secret = SECRET) {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  const metrics = new Registry();
  const leadership = createLeadership({
    leases: store.leases,
    knex: store.knex,
    config: { lease_seconds: 3 },
    log,
    metrics,
    holder: `${url}#${name}`, // as the policy module's default: the host name as the fragment
  });
  const calls: LeaderCalls = createLeaderCalls({
    leader: leadership.job("bots"),
    self: `${url}#${name}`,
    secret,
    log,
    metrics,
    timeoutMs: 5_000,
  });
  const ran: string[] = [];
  const post = calls.define(
    "post",
    async (room: string, body: { text: string }) => {
      await Promise.resolve();
      if (body.text === "") throw new ApiError("M_INVALID_PARAM", "A post needs a text");
      ran.push(`${room}:${body.text}`);
      return { by: name, at: new Date(0) };
    },
    (json) => ({ ...(json as { by: string }), at: new Date((json as { at: string }).at) }),
  );
  server.on(
    "request",
    createListenerApp({ log, routeGroups: [leaderCallsRouteGroup(() => calls)] }, (app) => {
      calls.mount(app);
    }),
  );
  return {
    url,
    leadership,
    post,
    ran,
    metrics,
    close: () =>
      new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      ),
  };
}

describe("calls on a job's leader", () => {
  let store: KnexStore;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    const made = await backend.make();
    cleanup = () => made.cleanup();
    store = await createStore(made.config);
  });
  afterAll(async () => {
    await store.close();
    await cleanup();
  });

  it("run on the leader, from any replica; errors come back as they were; a standby never sends a call on", async () => {
    const a = await replica(store, "a");
    const b = await replica(store, "b");
    await a.leadership.start();
    await b.leadership.start();
    expect(await a.leadership.holderOf("bots")).toBe(`${a.url}#a`);

    // On the leader: here. On the standby: sent to the leader, its answer decoded (the date).
    expect(await a.post("!r", { text: "one" })).toEqual({ by: "a", at: new Date(0) });
    expect(await b.post("!r", { text: "two" })).toEqual({ by: "a", at: new Date(0) });
    expect(a.ran).toEqual(["!r:one", "!r:two"]);
    expect(b.ran).toEqual([]);

    // The leader's refusal reaches the standby's caller with its errcode and message.
    const refused = await b.post("!r", { text: "" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).toJSON()).toEqual({
      errcode: "M_INVALID_PARAM",
      error: "A post needs a text",
    });

    // Only replicas with the registration may call: another token is refused, nothing runs.
    const stranger = await fetch(`${a.url}/_medmesh/replica/v1/calls/post`, {
      method: "POST",
      headers: { authorization: "Bearer guessed", "content-type": "application/json" },
      body: JSON.stringify({ args: ["!r", { text: "three" }] }),
    });
    expect(stranger.status).toBe(403);
    const none = await fetch(`${a.url}/_medmesh/replica/v1/calls/post`, { method: "POST" });
    expect(none.status).toBe(401);
    // A replica of another organisation (another registration) is refused by the leader.
    const other = await replica(store, "other", "another organisation's as_token");
    expect(await other.post("!r", { text: "three" }).catch((e: unknown) => (e as ApiError).errcode)).toBe(
      "M_FORBIDDEN",
    );
    // A call reaching a replica that does not lead (it led a moment ago) is refused, not sent on.
    const token = createHmac("sha256", SECRET).update("medmesh leader calls bots").digest("hex");
    const atStandby = await fetch(`${b.url}/_medmesh/replica/v1/calls/post`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ args: ["!r", { text: "four" }] }),
    });
    expect(atStandby.status).toBe(503);
    expect(await atStandby.json()).toMatchObject({ errcode: "M_UNAVAILABLE" });
    expect(a.ran).toEqual(["!r:one", "!r:two"]);
    expect(
      (await b.metrics.getSingleMetric("medmesh_leader_calls_total")?.get())?.values.map((v) => [
        v.labels.where,
        v.labels.outcome,
        v.value,
      ]),
    ).toEqual([
      ["forwarded", "ok", 1],
      ["forwarded", "refused", 1],
      ["received", "not_leader", 1],
    ]);

    // The leader is gone but its lease has not run out: the caller is told, nothing runs twice.
    await a.close();
    const unreachable = (await b.post("!r", { text: "five" }).catch((e: unknown) => e)) as ApiError;
    expect(unreachable.errcode).toBe("M_UNAVAILABLE");
    expect(unreachable.message).toContain(a.url);
    expect(b.ran).toEqual([]);

    // Handed over (a clean stop releases the lease): the new leader runs calls itself.
    await a.leadership.stop();
    await expect
      .poll(() => b.leadership.holderOf("bots"), { timeout: 30_000, interval: 200 })
      .toBe(`${b.url}#b`);
    await expect.poll(() => b.post("!r", { text: "six" }).then((r) => r.by), { timeout: 5_000 }).toBe("b");
    expect(b.ran).toEqual(["!r:six"]);
    for (const r of [b, other]) {
      await r.leadership.stop();
      await r.close();
    }
  });

  it("without a lease, or with a holder that is no URL, the standby says the job's leader runs it", async () => {
    await store.knex("leases").delete();
    const solo = await replica(store, "solo");
    // A holder from before leases named URLs: not called, the caller is told.
    await store.leases.tryAcquire("bots", "vm:8008", 60_000);
    await expect(solo.post("!r", { text: "x" })).rejects.toBeInstanceOf(LeadershipLost);
    await store.leases.release("bots", "vm:8008");
    await expect(solo.post("!r", { text: "x" })).rejects.toBeInstanceOf(LeadershipLost);
    expect(solo.ran).toEqual([]);
    await solo.close();
  });
});
