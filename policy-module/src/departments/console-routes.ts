import { audited, consoleRoute, json, type ApiDeps } from "../console/index.ts";
import { Refusal, type Route } from "../proxy/index.ts";
import { DepartmentIdSchema, onDuty, type Department } from "./department.ts";
import type { Departments } from "./index.ts";
import { retiredDetails, retiredView } from "./routes.ts";

const view = (d: Department, now: Date) => ({ ...d, on_duty_now: onDuty(d.rota, now) });

/**
 * The console's departments page API (org admins): list, create or replace, end. The same check and
 * ending as the admin API; every change, and every refused one, audited with the console user as actor.
 */
export function departmentConsoleRoutes(d: ApiDeps, departments: () => Departments | undefined): Route[] {
  const running = (): Departments => {
    const found = departments();
    if (!found) throw new Refusal(503, "M_UNAVAILABLE", "departments are still starting");
    return found;
  };
  return [
    consoleRoute(d, "GET", "/departments", "departments.manage", async () => {
      const now = new Date();
      return json({ departments: (await running().store.list()).map((x) => view(x, now)) });
    }),
    consoleRoute(d, "PUT", "/departments/{}", "departments.manage", async (ctx, actor, [raw]) => {
      const id = DepartmentIdSchema.safeParse(raw ?? "");
      if (!id.success)
        throw new Refusal(400, "M_INVALID_PARAM", `departmentId ${id.error.issues[0]?.message ?? ""}`);
      const { checked, created, department } = await running().put(id.data, await ctx.json(64 * 1024));
      if (!checked.ok || !department) {
        const field = checked.ok ? "(body)" : checked.field;
        await audited(d, actor, "department_refused", id.data, "invalid", { field });
        throw new Refusal(400, "M_INVALID_PARAM", `${field}: ${checked.ok ? "is invalid" : checked.message}`);
      }
      await audited(
        d,
        actor,
        created ? "department_created" : "department_updated",
        department.user_id,
        "ok",
        {
          department: id.data,
          members: department.members,
          shifts: department.rota.length,
          show_responder: department.show_responder,
        },
      );
      return json(view(department, new Date()), created ? 201 : 200);
    }),
    consoleRoute(d, "DELETE", "/departments/{}", "departments.manage", async (_ctx, actor, [raw]) => {
      const id = DepartmentIdSchema.safeParse(raw ?? "");
      if (!id.success)
        throw new Refusal(400, "M_INVALID_PARAM", `departmentId ${id.error.issues[0]?.message ?? ""}`);
      const ended = await running().retire(id.data);
      if (!ended) throw new Refusal(404, "M_NOT_FOUND", `No department ${id.data}`);
      await audited(
        d,
        actor,
        "department_retired",
        ended.department.user_id,
        "ok",
        retiredDetails(id.data, ended),
      );
      return json(retiredView(id.data, ended));
    }),
  ];
}
