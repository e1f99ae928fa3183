import { z } from "zod";

/** The department account's localpart: `medmesh-dept-<id>` (the policy module's appservice namespace). */
export const DEPARTMENT_LOCALPART_PREFIX = "medmesh-dept-";
export const departmentUserId = (id: string, serverName: string): string =>
  `@${DEPARTMENT_LOCALPART_PREFIX}${id}:${serverName}`;

const UserIdSchema = z.string().regex(/^@[^:\s]+:\S+$/, "must be a Matrix user ID (@name:server)");
const Instant = z.iso.datetime({ offset: true, message: "must be an ISO 8601 date-time with a time zone" });

export const ShiftSchema = z.strictObject({
  from: Instant,
  until: Instant,
  on_duty: z.array(UserIdSchema).min(1, "must name at least one member"),
});

/** What an organisation admin sends to create or replace a department (PUT, idempotent). */
export const DepartmentInputSchema = z.strictObject({
  name: z.string().trim().min(1, "must not be empty").max(80, "must be at most 80 characters"),
  members: z.array(UserIdSchema).min(1, "must name at least one member").max(200),
  rota: z.array(ShiftSchema).min(1, "must have at least one shift").max(1000),
  /** Whether the other party sees who of the department answered (the audit log always says). */
  show_responder: z.boolean().default(false),
});
export type DepartmentInput = z.infer<typeof DepartmentInputSchema>;
export type Shift = z.infer<typeof ShiftSchema>;

export interface Department extends DepartmentInput {
  id: string;
  user_id: string;
  updated_at: string;
}

export const DepartmentIdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, "must be 1 to 40 lower-case letters, digits or dashes");

export type Checked = { ok: true; value: DepartmentInput } | { ok: false; field: string; message: string };

const at = (s: string): number => Date.parse(s);
const fmt = (ms: number): string => new Date(ms).toISOString();
const minutes = (ms: number): string => `${String(Math.round(ms / 60_000))} min`;

/**
 * A department as sent: the schema, then the rota as one unbroken line of shifts — each shift
 * ends where the next begins (no gap where messages would reach nobody, no overlap where two
 * shifts claim the same time), on duty only the department's own members of this organisation.
 */
export function checkDepartment(raw: unknown, serverName: string): Checked {
  const parsed = DepartmentInputSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field =
      issue?.path
        .map(String)
        .join(".")
        .replace(/\.(\d+)/g, "[$1]") ?? "";
    return { ok: false, field: field || "(body)", message: issue?.message ?? "is invalid" };
  }
  const d = parsed.data;
  const foreign = d.members.findIndex((m) => !m.endsWith(`:${serverName}`));
  if (foreign >= 0)
    return {
      ok: false,
      field: `members[${String(foreign)}]`,
      message: `${d.members[foreign] ?? ""} is not a user of ${serverName}; a department's members are its organisation's`,
    };
  const rota = d.rota;
  for (const [i, s] of rota.entries()) {
    if (at(s.until) <= at(s.from))
      return { ok: false, field: `rota[${String(i)}].until`, message: `must be after from (${s.from})` };
    const stranger = s.on_duty.findIndex((u) => !d.members.includes(u));
    if (stranger >= 0)
      return {
        ok: false,
        field: `rota[${String(i)}].on_duty[${String(stranger)}]`,
        message: `${s.on_duty[stranger] ?? ""} is not one of the department's members`,
      };
    const prev = rota[i - 1];
    if (!prev) continue;
    const gap = at(s.from) - at(prev.until);
    if (gap > 0)
      return {
        ok: false,
        field: `rota[${String(i)}].from`,
        message: `leaves a gap of ${minutes(gap)} after rota[${String(i - 1)}] (which ends ${fmt(at(prev.until))}): nobody would be on duty`,
      };
    if (gap < 0)
      return {
        ok: false,
        field: `rota[${String(i)}].from`,
        message: `overlaps rota[${String(i - 1)}] (which ends ${fmt(at(prev.until))}) by ${minutes(-gap)}; shifts follow one another in order`,
      };
  }
  return { ok: true, value: d };
}

/** Who is on duty at `now`: the shift covering it (from inclusive, until exclusive), or nobody. */
export function onDuty(rota: readonly Shift[], now: Date): string[] {
  const t = now.getTime();
  return rota.find((s) => at(s.from) <= t && t < at(s.until))?.on_duty ?? [];
}

/**
 * The account's display name: the department's name and the organisation's server, never a
 * person's name (who answered is the audit log's, and shown only where the organisation chose).
 * The TI-Messenger reference files do not state a rule for functional accounts; see docs/departments.md.
 */
export const departmentDisplayName = (name: string, serverName: string): string => `${name} (${serverName})`;
