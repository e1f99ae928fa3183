import { z } from "zod";

/** Whether a user is a verified clinician. The proxy's directory and invite rules see only this. */
export interface Verification {
  isVerified(userId: string): Promise<boolean>;
}

export interface VerifiedClinician {
  user_id: string;
  display_name: string;
  profession: string;
}

export const VerifiedClinicianSchema = z.object({
  user_id: z.string().regex(/^@[^:]+:.+$/, "must be a Matrix user ID"),
  display_name: z.string().min(1),
  profession: z.string().min(1).describe("e.g. 'physician', 'nurse', 'pharmacist'"),
});

export const IdentityConfigSchema = z
  .object({
    verified_clinicians: z
      .array(VerifiedClinicianSchema)
      .default([])
      .describe(
        "Interim source of verified status until registry verification (identity issue) lands: " +
          "the organisation's clinicians whose registration its admin has checked.",
      )
      .meta({
        examples: [
          [
            {
              user_id: "@alice:hospital-a.example",
              display_name: "Dr. A. de Vries",
              profession: "physician",
            },
          ],
        ],
      }),
  })
  .describe("Clinician identity.");
export type IdentityConfig = z.output<typeof IdentityConfigSchema>;

/** The organisation's own verified clinicians, as the directory lists them. */
export interface LocalClinicians extends Verification {
  all(): readonly VerifiedClinician[];
  get(userId: string): VerifiedClinician | undefined;
}

export function configuredClinicians(config: IdentityConfig): LocalClinicians {
  const byId = new Map(config.verified_clinicians.map((c) => [c.user_id, c]));
  return {
    isVerified: (userId) => Promise.resolve(byId.has(userId)),
    all: () => [...byId.values()],
    get: (userId) => byId.get(userId),
  };
}
