import { createAuditLog, type AppserviceEvent, type DocumentStore, type SynapseAdmin } from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { startBot, type Bot } from "../bot/index.ts";
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
import { departmentsStore } from "./store.ts";

export { DEPARTMENTS_MIGRATIONS } from "./migrations.ts";
export { mountDepartmentsApi } from "./routes.ts";
export { departmentConsoleRoutes } from "./console-routes.ts";
export { HEALTHCARE_SERVICE_PATH, type DepartmentEntry } from "./fhir.ts";
export { checkDepartment, onDuty, departmentUserId, type Department } from "./department.ts";

export interface DepartmentsDeps {
  serverName: string;
  knex: Knex;
  documents: DocumentStore;
  homeserverUrl: string;
  asToken: string;
  admin: SynapseAdmin;
  /** The room-admin bot: in every room created through the proxy, never relayed. */
  botUserId: string;
  log: Logger;
  metrics: Registry;
  now?: () => Date;
}

/** Whether a user ID is one of this organisation's department accounts (the appservice's exclusive namespace). */
export const isDepartmentAccount = (userId: string, serverName: string): boolean =>
  userId.startsWith(`@${DEPARTMENT_LOCALPART_PREFIX}`) && userId.endsWith(`:${serverName}`);

/**
 * Department (functional) accounts (docs/departments.md): each is an end-to-end encrypting client
 * of its own (the bot's machinery: a kept device, a durable inbox) that relays between outside
 * conversations and desks of the members on duty.
 */
export async function startDepartments(d: DepartmentsDeps) {
  const store = departmentsStore(d.knex);
  const audit = createAuditLog(d.knex);
  const now = d.now ?? (() => new Date());
  const accounts = new Map<string, Promise<Bot>>();

  const account = (dept: Department): Promise<Bot> => {
    let bot = accounts.get(dept.id);
    if (bot) return bot;
    const ready = Promise.withResolvers<Bot>();
    const relay = createRelay({
      departmentId: dept.id,
      store,
      audit,
      ignoredSenders: [d.botUserId],
      log: d.log,
      now,
    });
    bot = startBot({
      homeserverUrl: d.homeserverUrl,
      asToken: d.asToken,
      botUserId: dept.user_id,
      ignoredMembers: [d.botUserId],
      admin: d.admin,
      documents: d.documents,
      log: d.log.child({ component: "department", department: dept.id }),
      metrics: d.metrics,
      displayName: departmentDisplayName(dept.name, d.serverName),
      accepts: () => Promise.resolve(true),
      onMessage: async (m) => relay.onMessage(await ready.promise, m),
    });
    bot.then(ready.resolve, (err: unknown) => {
      accounts.delete(dept.id);
      ready.reject(err);
    });
    accounts.set(dept.id, bot);
    return bot;
  };

  /** The directory's entries, kept in memory (the directory searches synchronously). */
  let entries: DepartmentEntry[] = [];
  const refresh = async (): Promise<void> => {
    entries = (await store.list()).map((x) => ({
      user_id: x.user_id,
      display_name: departmentDisplayName(x.name, d.serverName),
    }));
  };
  for (const dept of await store.list()) await account(dept);
  await refresh();

  /** A trusted peer's search (its signature checked by the peer API), as the Practitioner one. */
  const serveFhir = (ctx: ProxyContext): OwnResponse => {
    const q = ctx.url.searchParams;
    const count = Math.min(Number(q.get("_count") ?? 20) || 20, 50);
    const name = q.get("name");
    if (name === null || !name.trim()) throw new Refusal(400, "M_INVALID_PARAM", "Search by name");
    return { status: 200, body: healthcareServiceBundle(searchDepartments(entries, name, count)) };
  };

  return {
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
      const checked = checkDepartment(body, d.serverName);
      if (!checked.ok) return { checked };
      const userId = departmentUserId(id, d.serverName);
      const created = await store.put(id, userId, checked.value, now());
      const department = await store.get(id);
      if (!department) throw new Error(`department ${id} vanished after it was stored`);
      await refresh();
      const bot = await account(department);
      if (!created) await bot.client.setDisplayName(departmentDisplayName(department.name, d.serverName));
      return { checked, created, department };
    },
    onEvents: async (events: readonly AppserviceEvent[]): Promise<void> => {
      for (const bot of accounts.values()) await (await bot).onEvents(events);
    },
    stop(): void {
      for (const bot of accounts.values())
        void bot.then(
          (b) => {
            b.stop();
          },
          () => undefined,
        );
    },
  };
}
export type Departments = Awaited<ReturnType<typeof startDepartments>>;
