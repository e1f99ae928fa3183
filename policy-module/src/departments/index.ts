import { createAuditLog, LeadershipLost, type NotificationStore, type SynapseAdmin } from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { BOTS_JOB, type BotHost, type HostedBot } from "../bot/index.ts";
import {
  checkDepartment,
  DEPARTMENT_LOCALPART_PREFIX,
  departmentDisplayName,
  departmentUserId,
  type Checked,
  type Department,
} from "./department.ts";
import { Refusal, type OwnResponse, type ProxyContext } from "../proxy/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import {
  HEALTHCARE_SERVICE_PATH,
  healthcareServiceBundle,
  searchDepartments,
  type DepartmentEntry,
} from "./fhir.ts";
import { createRelay } from "./relay.ts";
import { closeDepartment, type Closing } from "./retire.ts";
import { createShiftTimer } from "./shift-timer.ts";
import { departmentsStore } from "./store.ts";

export { DEPARTMENTS_MIGRATIONS } from "./migrations.ts";
export { mountDepartmentsApi } from "./routes.ts";
export { departmentConsoleRoutes } from "./console-routes.ts";
export { HEALTHCARE_SERVICE_PATH, type DepartmentEntry } from "./fhir.ts";
export { SHIFTS_JOB } from "./shift-timer.ts";
export { checkDepartment, onDuty, departmentUserId, type Department } from "./department.ts";

export interface DepartmentsDeps {
  serverName: string;
  knex: Knex;
  /** Department changes made on one replica reach the others' accounts and directory. */
  notifications: NotificationStore;
  homeserverUrl: string;
  asToken: string;
  admin: SynapseAdmin;
  /** The room-admin bot: in every room created through the proxy, never relayed. */
  botUserId: string;
  log: Logger;
  metrics: Registry;
  /**
   * The accounts' devices run on the bots' leader (BOTS_JOB), and so does the shift change: desks
   * are re-staffed by the department's own account.
   */
  bots: BotHost;
  now?: () => Date;
}

/** Whether a user ID is one of this organisation's department accounts (the appservice's exclusive namespace). */
export const isDepartmentAccount = (userId: string, serverName: string): boolean =>
  userId.startsWith(`@${DEPARTMENT_LOCALPART_PREFIX}`) && userId.endsWith(`:${serverName}`);

const CHANGED = "medmesh_departments";

/**
 * Department (functional) accounts (docs/departments.md): each is an end-to-end encrypting client
 * of its own (the bot's machinery: a kept device, a durable inbox) that relays between outside
 * conversations and desks of the members on duty. Every replica registers them; the bots' leader
 * runs them.
 */
export async function startDepartments(d: DepartmentsDeps) {
  const store = departmentsStore(d.knex);
  const audit = createAuditLog(d.knex);
  const now = d.now ?? (() => new Date());
  const accounts = new Map<string, HostedBot>();
  const relays = new Map<string, ReturnType<typeof createRelay>>();

  const account = (dept: Department): HostedBot => {
    const known = accounts.get(dept.id);
    if (known) return known;
    const relay = createRelay({
      departmentId: dept.id,
      store,
      audit,
      ignoredSenders: [d.botUserId],
      log: d.log,
      now,
    });
    relays.set(dept.id, relay);
    const hosted: HostedBot = d.bots.add(dept.user_id, async () => ({
      homeserverUrl: d.homeserverUrl,
      asToken: d.asToken,
      ignoredMembers: [d.botUserId],
      admin: d.admin,
      log: d.log.child({ component: "department", department: dept.id }),
      metrics: d.metrics,
      // Its name now (it may have been renamed since it was registered).
      displayName: departmentDisplayName((await store.get(dept.id))?.name ?? dept.name, d.serverName),
      accepts: () => Promise.resolve(true),
      onMessage: async (m) => relay.onMessage(await hosted.running(), m),
    }));
    accounts.set(dept.id, hosted);
    return hosted;
  };
  const forget = (id: string): void => {
    const hosted = accounts.get(id);
    if (hosted) d.bots.remove(hosted.userId);
    accounts.delete(id);
    relays.delete(id);
  };

  /** The directory's entries, kept in memory (the directory searches synchronously). */
  let entries: DepartmentEntry[] = [];
  const refresh = async (): Promise<void> => {
    entries = (await store.list()).map((x) => ({
      user_id: x.user_id,
      display_name: departmentDisplayName(x.name, d.serverName),
    }));
  };
  /** The departments as the store has them now (another replica may have changed them). */
  const reload = async (): Promise<void> => {
    const listed = await store.list();
    for (const dept of listed) account(dept);
    for (const id of accounts.keys()) if (!listed.some((x) => x.id === id)) forget(id);
    await refresh();
  };
  await reload();
  const changed = async (id: string): Promise<void> => {
    await d.notifications.notify(CHANGED, id).catch((err: unknown) => {
      d.log.warn({ err, department: id }, "could not announce a department change to the other replicas");
    });
  };
  // The shift change: desks re-staffed at each boundary, by the same staffing as a message's.
  const shifts = createShiftTimer({
    leader: d.bots.leader,
    list: () => store.list(),
    restaff: async (dept) => {
      const bot = await account(dept).running();
      await relays.get(dept.id)?.restaff(bot, dept);
    },
    now,
    log: d.log,
  });
  shifts.start();
  // A change made through another replica: its accounts registered here, its rota re-armed.
  const reloadLogged = (): void => {
    reload().then(
      () => {
        shifts.rearm();
      },
      (err: unknown) => {
        d.log.warn({ err }, "could not reload the departments");
      },
    );
  };
  await d.notifications.listen(CHANGED, reloadLogged, reloadLogged);

  /** A trusted peer's search (its signature checked by the peer API), as the Practitioner one. */
  const serveFhir = (ctx: ProxyContext): OwnResponse => {
    const q = ctx.url.searchParams;
    const count = Math.min(Number(q.get("_count") ?? 20) || 20, 50);
    const name = q.get("name");
    if (name === null || !name.trim()) throw new Refusal(400, "M_INVALID_PARAM", "Search by name");
    return { status: 200, body: healthcareServiceBundle(searchDepartments(entries, name, count)) };
  };

  const departments = {
    store,
    entries: (): readonly DepartmentEntry[] => entries,
    peerRoutes: [
      { pattern: new RegExp(`^${HEALTHCARE_SERVICE_PATH}$`), handle: serveFhir },
    ] as readonly PeerRoute[],
    /**
     * Creates or replaces a department after checking it; its account starts (or is renamed).
     * The outcome says what was stored, or which field is wrong (nothing stored then).
     */
    async put(
      id: string,
      body: unknown,
    ): Promise<{ checked: Checked; created?: boolean; department?: Department }> {
      const prior = await store.retirement(id);
      if (prior?.retired_at) {
        const message = `was ended on ${prior.retired_at} and its account deactivated; choose another ID`;
        return { checked: { ok: false, field: "departmentId", message } };
      }
      const checked = checkDepartment(body, d.serverName);
      if (!checked.ok) return { checked };
      const userId = departmentUserId(id, d.serverName);
      const created = await store.put(id, userId, checked.value, now());
      const department = await store.get(id);
      if (!department) throw new Error(`department ${id} vanished after it was stored`);
      await refresh();
      account(department);
      // Renamed from any replica: as the account, through the appservice (its device is elsewhere).
      if (!created)
        await setDisplayName(d, department.user_id, departmentDisplayName(department.name, d.serverName));
      shifts.rearm();
      await changed(id);
      return { checked, created, department };
    },
    /**
     * Ends a department: from now on nothing is relayed; its conversations are told and left, its
     * desks emptied and left, its account deactivated (not erased); the rows stay, marked. Undefined
     * when there is nothing to end (no such department, or ended already). An ending interrupted
     * half-way is completed by the next call.
     */
    async retire(id: string): Promise<(Closing & { department: Department }) | undefined> {
      const found = await store.retirement(id);
      if (!found || found.closed_at) return undefined;
      // Closing speaks and leaves as the account: on the replica that runs it (sent there, below).
      if (!d.bots.leading()) throw new LeadershipLost(BOTS_JOB);
      const dept = found.department;
      await store.retire(id, now());
      await refresh();
      shifts.rearm();
      const bot = await account(dept)
        .running()
        .catch(async (err: unknown) => {
          if (err instanceof LeadershipLost) throw err;
          // An earlier try may have deactivated it already (then it cannot log in); otherwise a failure.
          const user = await d.admin
            .request<{ deactivated?: boolean }>(
              "GET",
              `/_synapse/admin/v2/users/${encodeURIComponent(dept.user_id)}`,
            )
            .catch(() => ({ deactivated: false }));
          if (user.deactivated === true) return undefined;
          throw err;
        });
      const closing = await closeDepartment({
        dept,
        displayName: departmentDisplayName(dept.name, d.serverName),
        bot,
        store,
        admin: d.admin,
        keep: [d.botUserId],
        log: d.log,
      });
      forget(id);
      await store.closed(id, now());
      await changed(id);
      return { ...closing, department: dept };
    },
    stop(): void {
      void shifts.stop();
    },
  };
  // Ending speaks and leaves as the account: on the bots' leader, sent there from a standby.
  return {
    ...departments,
    retire: d.bots.onLeader("departments.retire", (id: string) => departments.retire(id)),
  };
}
export type Departments = Awaited<ReturnType<typeof startDepartments>>;

async function setDisplayName(
  d: { homeserverUrl: string; asToken: string },
  userId: string,
  name: string,
): Promise<void> {
  const path = `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname`;
  const res = await fetch(new URL(`${path}?user_id=${encodeURIComponent(userId)}`, d.homeserverUrl), {
    method: "PUT",
    headers: { authorization: `Bearer ${d.asToken}`, "content-type": "application/json" },
    body: JSON.stringify({ displayname: name }),
    signal: AbortSignal.timeout(15_000),
  });
  if (!res.ok) throw new Error(`the department's name could not be set: ${String(res.status)}`);
}
