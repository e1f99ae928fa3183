import type { VerifiedClinician } from "../identity/verification.ts";

/** How a Matrix user ID is written as a FHIR identifier in MedMesh's Practitioner resources. */
export const MATRIX_ID_SYSTEM = "urn:ietf:rfc:3986#matrix-user-id";
export const PROFESSION_SYSTEM = "https://medmesh.example/fhir/CodeSystem/profession";

export interface FhirBundle {
  resourceType: "Bundle";
  type: "searchset";
  total: number;
  entry: { resource: Record<string, unknown> }[];
}

/** A FHIR R4 searchset Bundle: a Practitioner per clinician and a PractitionerRole with the profession. */
export function practitionerBundle(clinicians: readonly VerifiedClinician[]): FhirBundle {
  const entry = clinicians.flatMap((c, i) => {
    const id = `p${String(i)}-${Buffer.from(c.user_id).toString("base64url").slice(0, 40)}`;
    return [
      {
        resource: {
          resourceType: "Practitioner",
          id,
          active: true,
          identifier: [{ system: MATRIX_ID_SYSTEM, value: c.user_id }],
          name: [{ text: c.display_name }],
        },
      },
      {
        resource: {
          resourceType: "PractitionerRole",
          id: `${id}-role`,
          active: true,
          practitioner: { reference: `Practitioner/${id}` },
          code: [{ coding: [{ system: PROFESSION_SYSTEM, code: c.profession }] }],
        },
      },
    ];
  });
  return { resourceType: "Bundle", type: "searchset", total: clinicians.length, entry };
}

/** Reads clinicians back out of a peer's Bundle; anything that does not fit is skipped, never trusted. */
export function cliniciansFromBundle(bundle: unknown, server: string): VerifiedClinician[] {
  const entries = (bundle as { entry?: unknown } | null)?.entry;
  if (!Array.isArray(entries)) return [];
  const resources = entries.map((e) => (e as { resource?: Record<string, unknown> }).resource ?? {});
  const professions = new Map<string, string>();
  for (const r of resources) {
    if (r.resourceType !== "PractitionerRole") continue;
    const ref = (r.practitioner as { reference?: unknown } | undefined)?.reference;
    const code = (r.code as { coding?: { code?: unknown }[] }[] | undefined)?.[0]?.coding?.[0]?.code;
    if (typeof ref === "string" && typeof code === "string") professions.set(ref, code);
  }
  const out: VerifiedClinician[] = [];
  for (const r of resources) {
    if (r.resourceType !== "Practitioner" || typeof r.id !== "string") continue;
    const ids = r.identifier as { system?: unknown; value?: unknown }[] | undefined;
    const userId = ids?.find((i) => i.system === MATRIX_ID_SYSTEM)?.value;
    const name = (r.name as { text?: unknown }[] | undefined)?.[0]?.text;
    // A peer may only vouch for its own users.
    if (typeof userId !== "string" || !userId.endsWith(`:${server}`) || typeof name !== "string") continue;
    out.push({
      user_id: userId,
      display_name: name,
      profession: professions.get(`Practitioner/${r.id}`) ?? "unknown",
    });
  }
  return out;
}
