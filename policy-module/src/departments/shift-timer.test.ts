import { createLeadership, createStore, type Store } from "@medmesh/common";
import pino from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { POLICY_MODULE_MIGRATIONS } from "../migrations.ts";
import type { Department } from "./department.ts";
import { boundaryWithin, createShiftTimer, nextBoundary, SHIFTS_JOB } from "./shift-timer.ts";
import { departmentsStore } from "./store.ts";

const log = pino({ level: "silent" });
const A = "@anna:a.example";
const B = "@bert:a.example";
const at = (ms: number) => new Date(ms).toISOString();
const shifts = (boundary: number) => [
  { from: at(boundary - 3_600_000), until: at(boundary), on_duty: [A] },
  { from: at(boundary), until: at(boundary + 3_600_000), on_duty: [B] },
];
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("shift boundaries", () => {
  const t = Date.parse("2026-12-03T12:00:00Z");
  const dept = (boundary: number) => ({ rota: shifts(boundary) }) as unknown as Department;
  it("finds the next start or end of a shift of any department, and whether one passed", () => {
    const departments = [dept(t + 60_000), dept(t + 30_000)];
    expect(nextBoundary(departments, t)).toBe(t + 30_000);
    expect(nextBoundary(departments, t + 30_000)).toBe(t + 60_000);
    expect(nextBoundary(departments, t + 60_000)).toBe(t + 30_000 + 3_600_000);
    expect(nextBoundary(departments, t + 10 * 3_600_000)).toBeUndefined();
    expect(nextBoundary([], t)).toBeUndefined();
    expect(boundaryWithin(shifts(t), t - 1, t)).toBe(true); // (since, until]
    expect(boundaryWithin(shifts(t), t, t + 1)).toBe(false);
  });
});

for (const backend of storeBackends()) {
  describe(`the shift change timer on ${backend.name}`, () => {
    const withStore = async (fn: (store: Store) => Promise<void>): Promise<void> => {
      const b = await backend.make();
      const store = await createStore(b.config, { migrations: POLICY_MODULE_MIGRATIONS });
      try {
        await fn(store);
      } finally {
        await store.close();
        await b.cleanup();
      }
    };

    it("re-staffs on the elected replica only, at the boundary, and on a rota replaced; a standby taking over catches up", () =>
      withStore(async (store) => {
        const departments = departmentsStore(store.knex);
        const input = (boundary: number) => ({
          name: "Cardiology on duty",
          members: [A, B],
          rota: shifts(boundary),
          show_responder: false,
        });
        const boundary = Date.now() + 1_500;
        await departments.put("cardio", "@medmesh-dept-cardio:a.example", input(boundary));
        await departments.put("far", "@medmesh-dept-far:a.example", input(Date.now() + 3 * 3_600_000));
        await departments.put("ended", "@medmesh-dept-ended:a.example", input(boundary));
        await departments.retire("ended");

        const calls: { replica: string; id: string; at: number }[] = [];
        const replica = (name: string) => {
          const leadership = createLeadership({
            leases: store.leases,
            knex: store.knex,
            config: { lease_seconds: 1 },
            log,
            metrics: new Registry(),
            holder: name,
          });
          const timer = createShiftTimer({
            leader: leadership.job(SHIFTS_JOB),
            list: () => departments.list(),
            restaff: (dept) => {
              calls.push({ replica: name, id: dept.id, at: Date.now() });
              return Promise.resolve();
            },
            now: () => new Date(),
            log,
          });
          timer.start();
          return { leadership, timer };
        };
        const a = replica("a");
        await a.leadership.start();
        const b = replica("b");
        await b.leadership.start();
        // Elected: every current department once (what passed while nobody led), on the leader only.
        await wait(300);
        expect(calls.map((c) => [c.replica, c.id]).sort()).toEqual([
          ["a", "cardio"],
          ["a", "far"],
        ]);
        calls.length = 0;

        // The boundary: only its department, once, after it (no message needed).
        await wait(boundary - Date.now() + 500);
        expect(calls.map((c) => [c.replica, c.id])).toEqual([["a", "cardio"]]);
        expect(calls[0]!.at).toBeGreaterThanOrEqual(boundary);
        calls.length = 0;

        // A rota replaced: re-staffed at once, and its new boundary is the next one waited for.
        const soon = Date.now() + 1_000;
        await departments.put("far", "@medmesh-dept-far:a.example", input(soon));
        a.timer.rearm();
        await wait(300);
        expect(calls.map((c) => [c.replica, c.id])).toEqual([["a", "far"]]);
        calls.length = 0;

        // The leader stops before that boundary: the standby takes over and catches up on election.
        await a.timer.stop();
        await a.leadership.stop();
        await wait(soon - Date.now() + 1_000);
        expect(calls.every((c) => c.replica === "b")).toBe(true);
        expect(calls.map((c) => c.id)).toContain("far");
        expect(calls.map((c) => c.id)).not.toContain("ended");
        await b.timer.stop();
        await b.leadership.stop();
      }));
  });
}
