import { z } from "zod";
import { normaliseExtractNumber } from "../extract/extract.ts";
import type { RegisteredName, RegistryRecord, RegistrationStatus } from "../types.ts";

/*
 * An IHE mCSD (Mobile Care Services Discovery) export, or a national directory's in the same shape:
 * a FHIR R4 Bundle whose entries are Practitioner resources (and PractitionerRole resources that
 * point at them). What is read, and nothing else:
 *   Practitioner.identifier[system = the configured system URI].value — the registration number
 *     (also found in Practitioner.qualification[].identifier, where nl-core puts the BIG number);
 *   Practitioner.name[] — family, given, use: "maiden" is the birth name, "official"/"usual" (or no
 *     use) the name in use; names with use "old", "temp" or "anonymous" or an ended period are not;
 *   Practitioner.active — false means no longer registered (struck off);
 *   Practitioner.qualification[] — the profession (code.text or the first coding's display), and
 *     the qualification's period: ended → struck off;
 *   PractitionerRole.practitioner.reference, .specialty[], .code[] — specialisms, and the profession
 *     when no qualification names one.
 * FHIR has no "suspended": a register that suspends someone marks them inactive in its export.
 */

export class McsdFeedError extends Error {
  override name = "McsdFeedError";
}

const coding = z.looseObject({
  system: z.string().optional(),
  code: z.string().optional(),
  display: z.string().optional(),
});
const concept = z.looseObject({ coding: z.array(coding).optional(), text: z.string().optional() });
const period = z.looseObject({ start: z.string().optional(), end: z.string().optional() });
const identifier = z.looseObject({ system: z.string().optional(), value: z.string().optional() });
const humanName = z.looseObject({
  use: z.string().optional(),
  text: z.string().optional(),
  family: z.string().optional(),
  given: z.array(z.string()).optional(),
  period: period.optional(),
});
const practitioner = z.looseObject({
  resourceType: z.literal("Practitioner"),
  id: z.string().optional(),
  identifier: z.array(identifier).optional(),
  active: z.boolean().optional(),
  name: z.array(humanName).optional(),
  qualification: z
    .array(
      z.looseObject({
        identifier: z.array(identifier).optional(),
        code: concept,
        period: period.optional(),
      }),
    )
    .optional(),
});
const practitionerRole = z.looseObject({
  resourceType: z.literal("PractitionerRole"),
  active: z.boolean().optional(),
  practitioner: z.looseObject({ reference: z.string().optional() }).optional(),
  code: z.array(concept).optional(),
  specialty: z.array(concept).optional(),
});
const bundle = z.looseObject({
  resourceType: z.literal("Bundle"),
  entry: z
    .array(
      z.looseObject({
        fullUrl: z.string().optional(),
        resource: z.looseObject({ resourceType: z.string() }),
      }),
    )
    .optional(),
});
type Practitioner = z.infer<typeof practitioner>;
type Role = z.infer<typeof practitionerRole>;
type Concept = z.infer<typeof concept>;

/** The numbers a feed lists, each one record; a number listed twice is ambiguous (never verifies). */
export interface McsdFeed {
  records: Map<string, RegistryRecord>;
  ambiguous: Set<string>;
  practitioners: number;
}

const label = (c: Concept | undefined): string | undefined =>
  c?.text?.trim() || c?.coding?.find((x) => x.display?.trim())?.display?.trim() || c?.coding?.[0]?.code;

const ended = (p: { end?: string | undefined } | undefined, now: Date): boolean => {
  if (!p?.end) return false;
  const end = new Date(p.end);
  if (Number.isNaN(end.getTime()))
    throw new McsdFeedError(`an unreadable period end "${p.end.slice(0, 40)}"`);
  return end <= now;
};

/** Birth name first (maiden, else the official one), the other current names as alternates. */
function nameOf(names: Practitioner["name"], now: Date): RegisteredName | undefined {
  const current = (names ?? []).filter(
    (n) => !["old", "temp", "anonymous"].includes(n.use ?? "") && !ended(n.period, now) && n.family?.trim(),
  );
  const birth =
    current.find((n) => n.use === "maiden") ??
    current.find((n) => n.use === "official") ??
    current.find((n) => n.use === "usual" || n.use === undefined) ??
    current[0];
  if (!birth?.family) return undefined;
  const given = (birth.given ?? []).join(" ").trim();
  const display = current.find((n) => n.use === "official" || n.use === "usual") ?? birth;
  const alternates = current
    .filter((n) => n !== birth && n.family?.trim() && n.family.trim() !== birth.family?.trim())
    .map((n) => ({ surname: (n.family ?? "").trim() }));
  return {
    full: display.text?.trim() || [...(display.given ?? []), display.family ?? ""].join(" ").trim(),
    surname: birth.family.trim(),
    ...(given ? { given } : {}),
    ...(alternates.length > 0 ? { alternates } : {}),
  };
}

/** Parses a whole feed; McsdFeedError (naming the entry, never a number) when it is unusable. */
export function parseMcsdFeed(text: string, system: string, registry: string, now = new Date()): McsdFeed {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new McsdFeedError(`not valid JSON (${(err as Error).message.slice(0, 120)})`);
  }
  const top = bundle.safeParse(data);
  if (!top.success) throw new McsdFeedError('not a FHIR Bundle ({"resourceType": "Bundle", "entry": [...]})');
  const entries = top.data.entry ?? [];
  const practitioners: { p: Practitioner; refs: string[]; where: string }[] = [];
  const roles: Role[] = [];
  entries.forEach((e, i) => {
    const where = `entry ${String(i + 1)}`;
    if (e.resource.resourceType === "Practitioner") {
      const p = practitioner.safeParse(e.resource);
      if (!p.success) throw new McsdFeedError(`${where}: a Practitioner that does not match FHIR R4`);
      const refs = [p.data.id ? `Practitioner/${p.data.id}` : "", e.fullUrl ?? ""].filter((r) => r !== "");
      practitioners.push({ p: p.data, refs, where });
    } else if (e.resource.resourceType === "PractitionerRole") {
      const r = practitionerRole.safeParse(e.resource);
      if (!r.success) throw new McsdFeedError(`${where}: a PractitionerRole that does not match FHIR R4`);
      roles.push(r.data);
    }
  });
  const rolesOf = (refs: string[]): Role[] =>
    roles.filter((r) => {
      const ref = r.practitioner?.reference ?? "";
      return r.active !== false && refs.some((x) => ref === x || x.endsWith(`/${ref}`));
    });

  const records = new Map<string, RegistryRecord>();
  const ambiguous = new Set<string>();
  for (const { p, refs, where } of practitioners) {
    const quals = p.qualification ?? [];
    const ours = (ids: z.infer<typeof identifier>[] | undefined) =>
      (ids ?? []).filter((id) => id.system === system && id.value?.trim());
    const qualification = quals.find((q) => ours(q.identifier).length > 0);
    const raw = ours(p.identifier)[0]?.value ?? ours(qualification?.identifier)[0]?.value;
    if (raw === undefined) continue; // another register's practitioner
    const number = normaliseExtractNumber(raw);
    if (!number.ok) throw new McsdFeedError(`${where}: an identifier of ${system} that is not a number`);
    const name = nameOf(p.name, now);
    if (!name) throw new McsdFeedError(`${where}: a Practitioner without a family name`);
    const mine = rolesOf(refs);
    const profession =
      label((qualification ?? quals[0])?.code) ??
      label(mine.flatMap((r) => r.code ?? [])[0]) ??
      "practitioner";
    const specialisms = [...new Set(mine.flatMap((r) => r.specialty ?? []).flatMap((c) => label(c) ?? []))];
    const status: RegistrationStatus =
      p.active === false || ended(qualification?.period, now) ? "struck_off" : "active";
    if (records.has(number.normalised)) ambiguous.add(number.normalised);
    records.set(number.normalised, {
      registry,
      number: number.normalised,
      name,
      profession,
      specialisms,
      status,
    });
  }
  return { records, ambiguous, practitioners: practitioners.length };
}
