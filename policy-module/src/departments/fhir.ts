import { MATRIX_ID_SYSTEM, type FhirBundle } from "../directory/fhir.ts";
import { fold } from "../directory/search-index.ts";

export const HEALTHCARE_SERVICE_PATH = "/_medmesh/fhir/r4/HealthcareService";

/** A department as the directory lists it: its own entry, of kind department. */
export interface DepartmentEntry {
  user_id: string;
  display_name: string;
}

/** A FHIR R4 searchset Bundle: a HealthcareService per department, its Matrix account as an endpoint identifier. */
export function healthcareServiceBundle(entries: readonly DepartmentEntry[]): FhirBundle {
  return {
    resourceType: "Bundle",
    type: "searchset",
    total: entries.length,
    entry: entries.map((e) => ({
      resource: {
        resourceType: "HealthcareService",
        id: Buffer.from(e.user_id).toString("base64url").slice(0, 60),
        active: true,
        identifier: [{ system: MATRIX_ID_SYSTEM, value: e.user_id }],
        name: e.display_name,
      },
    })),
  };
}

/** Reads departments back out of a peer's Bundle; a peer may only vouch for its own accounts. */
export function departmentsFromBundle(bundle: unknown, server: string): DepartmentEntry[] {
  const entries = (bundle as { entry?: unknown } | null)?.entry;
  if (!Array.isArray(entries)) return [];
  const out: DepartmentEntry[] = [];
  for (const e of entries) {
    const r = (e as { resource?: Record<string, unknown> }).resource ?? {};
    if (r.resourceType !== "HealthcareService" || typeof r.name !== "string") continue;
    const ids = r.identifier as { system?: unknown; value?: unknown }[] | undefined;
    const userId = ids?.find((i) => i.system === MATRIX_ID_SYSTEM)?.value;
    if (typeof userId !== "string" || !userId.endsWith(`:${server}`)) continue;
    out.push({ user_id: userId, display_name: r.name });
  }
  return out;
}

/** Every word of the term in the name or the user ID (as the clinician search). */
export function searchDepartments(
  entries: readonly DepartmentEntry[],
  term: string,
  limit: number,
): DepartmentEntry[] {
  const words = fold(term).split(/\s+/).filter(Boolean);
  if (words.length === 0) return [];
  return entries
    .filter((e) => {
      const text = fold(`${e.display_name} ${e.user_id}`);
      return words.every((w) => text.includes(w));
    })
    .slice(0, limit);
}
