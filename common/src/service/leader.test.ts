import { Registry } from "prom-client";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createStore, type KnexStore } from "../store/store.ts";
import { storeBackends } from "../store/test-backends.ts";
import { createLeadership, LeadershipLost } from "./leader.ts";

const log = pino({ level: "silent" });
const backend = storeBackends()[0]!; // PGlite: one process, two instances on one store

describe("leader election", () => {
  let store: KnexStore;
  let cleanup: () => Promise<void>;
  afterAll(async () => {
    await store.close();
    await cleanup();
  });
  const replica = (holder: string, leaseSeconds = 1) => {
    const metrics = new Registry();
    return {
      metrics,
      leadership: createLeadership({
        leases: store.leases,
        knex: store.knex,
        config: { lease_seconds: leaseSeconds },
        log,
        metrics,
        holder,
      }),
    };
  };
  const gauge = async (metrics: Registry, job: string) =>
    ((await metrics.getSingleMetric("medmesh_leader")?.get())?.values ?? []).find((v) => v.labels.job === job)
      ?.value;

  it("elects one leader per job, fences the standby, and hands over within the lease when the leader dies", async () => {
    const made = await backend.make();
    cleanup = () => made.cleanup();
    store = await createStore(made.config);
    const a = replica("a");
    const b = replica("b");
    const aSweep = a.leadership.job("sweep");
    const bSweep = b.leadership.job("sweep");
    let bElected = 0;
    bSweep.onElected(() => bElected++);
    await a.leadership.start();
    await b.leadership.start();
    expect(aSweep.isLeader()).toBe(true);
    expect(bSweep.isLeader()).toBe(false);
    expect(await gauge(a.metrics, "sweep")).toBe(1);
    expect(await gauge(b.metrics, "sweep")).toBe(0);
    await aSweep.fence();
    await expect(bSweep.fence()).rejects.toBeInstanceOf(LeadershipLost);

    // a "dies": it stops renewing without releasing (as kill -9 would).
    const died = Date.now();
    await a.leadership.stop().catch(() => undefined);
    await store.leases.tryAcquire("sweep", "a", 1000); // a's lease as it was: 1 s left, never renewed
    await expect.poll(() => bSweep.isLeader(), { timeout: 5000, interval: 50 }).toBe(true);
    const takeoverMs = Date.now() - died;
    expect(takeoverMs, "takeover within the lease and a third (and scheduling slack)").toBeLessThan(
      1000 + 334 + 1500,
    );
    expect(takeoverMs).toBeGreaterThanOrEqual(900);
    expect(bElected).toBe(1);
    await bSweep.fence();
    expect(await gauge(b.metrics, "sweep")).toBe(1);
    await b.leadership.stop();
  });

  it("a leader whose lease was taken stops: isLeader false and the fence refuses", async () => {
    const a = replica("a2", 60);
    const job = a.leadership.job("reverify");
    let lost = 0;
    job.onLost(() => lost++);
    await a.leadership.start();
    expect(job.isLeader()).toBe(true);
    expect(lost).toBe(0);
    // Someone else holds it now (the lease ran out while this instance stalled).
    await store.knex("leases").where({ name: "reverify" }).update({ holder: "other" });
    await expect(job.fence()).rejects.toBeInstanceOf(LeadershipLost);
    expect(job.isLeader()).toBe(false);
    expect(lost, "what runs on the leader is told at once (the E2EE bots stop)").toBe(1);
    expect(await gauge(a.metrics, "reverify")).toBe(0);
    await a.leadership.stop();
    // Its clean stop released nothing that was not its own.
    expect(await store.knex("leases").where({ name: "reverify" }).first("holder")).toEqual({
      holder: "other",
    });
  });

  it("a paused leader stops the moment it resumes, before its overdue renewal", async () => {
    const a = replica("a4", 1);
    const job = a.leadership.job("paused");
    await a.leadership.start();
    expect(job.isLeader()).toBe(true);
    // The event loop blocked past the lease (as SIGSTOP or a VM freeze would): no renewal ran.
    const until = Date.now() + 1100;
    while (Date.now() < until) {
      /* blocked */
    }
    expect(job.isLeader(), "its lease may be another's by now").toBe(false);
    await expect(job.fence()).rejects.toBeInstanceOf(LeadershipLost);
    // Nobody took it meanwhile: the next renewal holds it again.
    await expect.poll(() => job.isLeader(), { timeout: 3000, interval: 50 }).toBe(true);
    await a.leadership.stop();
  });

  it("a clean stop hands the lease over at once", async () => {
    const a = replica("a3", 60);
    const b = replica("b3", 60);
    const aJob = a.leadership.job("outbox");
    const bJob = b.leadership.job("outbox");
    await a.leadership.start();
    await b.leadership.start();
    expect(aJob.isLeader()).toBe(true);
    await a.leadership.stop();
    expect(await store.knex("leases").where({ name: "outbox" }).first()).toBeUndefined();
    // b's next try (a third of the lease) would take it; a start-up election does at once.
    const c = replica("b3", 60);
    const cJob = c.leadership.job("outbox");
    await c.leadership.start();
    expect(cJob.isLeader()).toBe(true);
    expect(bJob.isLeader()).toBe(false);
    await c.leadership.stop();
    await b.leadership.stop();
  });
});
