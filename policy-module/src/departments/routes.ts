import { adminActorOf, ApiError, asyncHandler, createAuditLog, type Store } from "@medmesh/common";
import type { Express } from "express";
import { DepartmentIdSchema, onDuty, type Department } from "./department.ts";
import type { Departments } from "./index.ts";
import type { Closing } from "./retire.ts";

const PATH = "/_medmesh/admin/v1/departments";

const view = (d: Department, now: Date) => ({ ...d, on_duty_now: onDuty(d.rota, now) });

/**
 * The organisation admin's API for departments, on the internal (admin) listener: list, read,
 * create or replace (PUT, with members and rota), end (DELETE). Every change, and every refused
 * one, is audited with the admin as actor.
 */
export function mountDepartmentsApi(
  app: Express,
  d: { departments: () => Departments | undefined; store: Store },
): void {
  const audit = createAuditLog(d.store.knex);
  const running = (): Departments => {
    const departments = d.departments();
    if (!departments) throw new ApiError("M_UNAVAILABLE", "departments are not running (no proxy role)");
    return departments;
  };
  const idOf = (raw: unknown): string => {
    const id = DepartmentIdSchema.safeParse(raw);
    if (!id.success)
      throw new ApiError("M_INVALID_PARAM", `departmentId ${id.error.issues[0]?.message ?? ""}`);
    return id.data;
  };
  app.get(
    PATH,
    asyncHandler(async (_req, res) => {
      const now = new Date();
      res.json({ departments: (await running().store.list()).map((x) => view(x, now)) });
    }),
  );
  app.get(
    `${PATH}/:departmentId`,
    asyncHandler(async (req, res) => {
      const id = idOf(req.params.departmentId);
      const found = await running().store.get(id);
      if (!found) throw new ApiError("M_NOT_FOUND", `No department ${id}`);
      res.json(view(found, new Date()));
    }),
  );
  app.put(
    `${PATH}/:departmentId`,
    asyncHandler(async (req, res) => {
      const id = idOf(req.params.departmentId);
      const actor = adminActorOf(req) ?? "unknown";
      const { checked, created, department } = await running().put(id, req.body);
      if (!checked.ok || !department) {
        const field = checked.ok ? "(body)" : checked.field;
        const message = checked.ok ? "is invalid" : checked.message;
        await audit.record({
          actor,
          action: "department.refused",
          object: id,
          outcome: "invalid",
          details: { field },
        });
        throw new ApiError("M_INVALID_PARAM", `${field}: ${message}`);
      }
      await audit.record({
        actor,
        action: created ? "department.created" : "department.updated",
        object: department.user_id,
        outcome: "ok",
        details: {
          department: id,
          members: department.members,
          shifts: department.rota.length,
          show_responder: department.show_responder,
        },
      });
      res.status(created ? 201 : 200).json(view(department, new Date()));
    }),
  );
  app.delete(
    `${PATH}/:departmentId`,
    asyncHandler(async (req, res) => {
      const id = idOf(req.params.departmentId);
      const ended = await running().retire(id);
      // Unknown, or ended already: nothing done (a second DELETE is a 404).
      if (!ended) throw new ApiError("M_NOT_FOUND", `No department ${id}`);
      await audit.record({
        actor: adminActorOf(req) ?? "unknown",
        action: "department.retired",
        object: ended.department.user_id,
        outcome: "ok",
        details: retiredDetails(id, ended),
      });
      res.json(retiredView(id, ended));
    }),
  );
}

/** What the audit keeps of an ending: the rooms (never a message). */
export const retiredDetails = (id: string, ended: Closing) => ({
  department: id,
  conversations: ended.conversations,
  desks: ended.desks,
  removed: ended.removed,
  deactivated: true,
});

export const retiredView = (id: string, ended: Closing & { department: Department }) => ({
  id,
  user_id: ended.department.user_id,
  retired: true,
  conversations_left: ended.conversations.length,
  desks_left: ended.desks.length,
  deactivated: true,
});
