import type { Leader } from "@medmesh/common";
import type { Logger } from "pino";
import type { Department, Shift } from "./department.ts";

/** The singleton job's name (its leader lease): one replica re-staffs the desks at a shift change. */
export const SHIFTS_JOB = "department-shifts";
/** A boundary further away than this is waited for in steps (and a rota replaced on another replica is seen). */
export const MAX_WAIT_MS = 60_000;
/** After the boundary, so that the shift beginning there is the one on duty (`until` is exclusive). */
const PAST_BOUNDARY_MS = 50;

const boundaries = (rota: readonly Shift[]): number[] =>
  rota.flatMap((s) => [Date.parse(s.from), Date.parse(s.until)]);

/** The first shift boundary (a shift's start or end) of any of the departments after `after` (ms). */
export function nextBoundary(departments: readonly Department[], after: number): number | undefined {
  let next: number | undefined;
  for (const dept of departments)
    for (const b of boundaries(dept.rota)) if (b > after && (next === undefined || b < next)) next = b;
  return next;
}

/** Whether a shift of the rota began or ended in (since, until]. */
export const boundaryWithin = (rota: readonly Shift[], since: number, until: number): boolean =>
  boundaries(rota).some((b) => b > since && b <= until);

/**
 * The shift change (docs/departments.md): on the elected leader of SHIFTS_JOB, a timer set for the
 * next boundary of any department's rota. When it fires, each department whose shift changed
 * since the last pass (or whose rota was replaced since) has its desks re-staffed. The boundaries
 * come from the stored rotas, so a restart (or a standby taking over) needs nothing kept: on
 * election every department is re-staffed once, catching a change that passed while nobody led.
 */
export function createShiftTimer(d: {
  leader: Leader;
  list: () => Promise<Department[]>;
  restaff: (dept: Department) => Promise<void>;
  now: () => Date;
  log: Logger;
  maxWaitMs?: number;
}) {
  const maxWaitMs = d.maxWaitMs ?? MAX_WAIT_MS;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let checkedUntil = d.now().getTime();
  let all = false;
  let running: Promise<void> | undefined;
  let again = false;

  const arm = (next: number | undefined): void => {
    clearTimeout(timer);
    if (stopped) return;
    const wait = next === undefined ? maxWaitMs : next - d.now().getTime() + PAST_BOUNDARY_MS;
    timer = setTimeout(wake, Math.min(Math.max(wait, 0), maxWaitMs));
    timer.unref(); // the service's own handles keep it running
  };

  const pass = async (): Promise<void> => {
    const t = d.now().getTime();
    const departments = await d.list();
    if (d.leader.isLeader()) {
      const everything = all;
      all = false;
      for (const dept of departments) {
        if (stopped || !d.leader.isLeader()) break;
        const changed =
          everything ||
          boundaryWithin(dept.rota, checkedUntil, t) ||
          Date.parse(dept.updated_at) > checkedUntil;
        if (!changed) continue;
        try {
          await d.restaff(dept);
        } catch (err) {
          d.log.warn({ err, department: dept.id }, "could not re-staff a department at the shift change");
        }
      }
    }
    checkedUntil = t;
    arm(nextBoundary(departments, t));
  };

  /** Runs a pass now; one at a time, a wake during a pass runs another after it. */
  const wake = (): void => {
    again = true;
    if (running) return;
    running = (async () => {
      while (again && !stopped) {
        again = false;
        try {
          await pass();
        } catch (err) {
          d.log.warn({ err }, "the department shift timer failed; trying again later");
          arm(undefined);
        }
      }
    })().finally(() => {
      running = undefined;
    });
  };

  return {
    start(): void {
      d.leader.onElected(() => {
        all = true;
        wake();
      });
      wake();
    },
    /** A rota was replaced (or a department ended): the next boundary is computed again now. */
    rearm: wake,
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
