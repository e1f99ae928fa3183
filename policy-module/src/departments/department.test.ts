import { describe, expect, it } from "vitest";
import { checkDepartment, onDuty } from "./department.ts";

const A = "@anna:a.example";
const B = "@bert:a.example";
const shift = (from: string, until: string, on_duty: string[]) => ({
  from: `2026-12-03T${from}:00Z`,
  until: `2026-12-03T${until}:00Z`,
  on_duty,
});
const dept = (rota: unknown[], members = [A, B]) => ({ name: "Cardiology on duty", members, rota });
const refusal = (raw: unknown) => {
  const c = checkDepartment(raw, "a.example");
  if (c.ok) throw new Error("expected a refusal");
  return `${c.field}: ${c.message}`;
};

describe("a department's rota", () => {
  it("takes shifts that follow one another, and says who is on duty when", () => {
    const c = checkDepartment(
      dept([shift("08:00", "16:00", [A]), shift("16:00", "23:00", [B, A])]),
      "a.example",
    );
    expect(c).toMatchObject({ ok: true, value: { show_responder: false } });
    if (!c.ok) return;
    expect(onDuty(c.value.rota, new Date("2026-12-03T08:00:00Z"))).toEqual([A]);
    expect(onDuty(c.value.rota, new Date("2026-12-03T15:59:59Z"))).toEqual([A]);
    expect(onDuty(c.value.rota, new Date("2026-12-03T16:00:00Z"))).toEqual([B, A]);
    expect(onDuty(c.value.rota, new Date("2026-12-03T23:00:00Z"))).toEqual([]);
    expect(onDuty(c.value.rota, new Date("2026-12-03T07:59:59Z"))).toEqual([]);
  });

  it("refuses a gap, naming the shift and how long nobody would be on duty", () => {
    expect(refusal(dept([shift("08:00", "16:00", [A]), shift("16:30", "23:00", [B])]))).toBe(
      "rota[1].from: leaves a gap of 30 min after rota[0] (which ends 2026-12-03T16:00:00.000Z): nobody would be on duty",
    );
  });

  it("refuses an overlap, and shifts out of order", () => {
    expect(refusal(dept([shift("08:00", "16:00", [A]), shift("15:00", "23:00", [B])]))).toMatch(
      /^rota\[1\]\.from: overlaps rota\[0\] \(which ends 2026-12-03T16:00:00.000Z\) by 60 min/,
    );
    expect(refusal(dept([shift("16:00", "23:00", [A]), shift("08:00", "16:00", [B])]))).toMatch(
      /^rota\[1\]\.from: overlaps rota\[0\]/,
    );
  });

  it("refuses a shift that ends before it starts, or names someone not a member", () => {
    expect(refusal(dept([shift("16:00", "08:00", [A])]))).toMatch(/^rota\[0\]\.until: must be after from/);
    expect(refusal(dept([shift("08:00", "16:00", ["@zoe:a.example"])]))).toBe(
      "rota[0].on_duty[0]: @zoe:a.example is not one of the department's members",
    );
    expect(refusal(dept([shift("08:00", "16:00", [])]))).toBe(
      "rota[0].on_duty: must name at least one member",
    );
  });

  it("refuses malformed fields by name, and members of other organisations", () => {
    expect(refusal({ ...dept([shift("08:00", "16:00", [A])]), name: " " })).toBe("name: must not be empty");
    expect(refusal(dept([{ from: "tomorrow", until: "2026-12-03T16:00:00Z", on_duty: [A] }]))).toMatch(
      /^rota\[0\]\.from: must be an ISO 8601 date-time/,
    );
    expect(refusal(dept([shift("08:00", "16:00", [A])], [A, "@b:b.example"]))).toMatch(
      /^members\[1\]: @b:b.example is not a user of a.example/,
    );
    expect(refusal({ ...dept([shift("08:00", "16:00", [A])]), colour: "red" })).toMatch(/^\(body\)|colour/);
    expect(refusal(dept([]))).toBe("rota: must have at least one shift");
  });
});
