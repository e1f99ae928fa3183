import { z } from "zod";
import { RegistriesConfigSchema } from "./registries/index.ts";

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

/** Written by the generator from the organisation's `sso` section (deployment config). */
export const SsoIdentityConfigSchema = z
  .object({
    idp_id: z
      .string()
      .regex(/^oidc-[A-Za-z0-9._~-]+$/, "must be Synapse's idp_id of the provider (oidc-…)")
      .describe("Synapse's ID of the organisation's identity provider (external_ids' auth_provider).")
      .meta({ examples: ["oidc-hospital-a"] }),
    organisation_name: z
      .string()
      .min(1)
      .describe("Who proves the identity, as attestations and badges name it: the organisation's name.")
      .meta({ examples: ["Hospital A"] }),
    name_claim: z
      .string()
      .min(1)
      .default("name")
      .describe("The claim with the person's name, matched against the registry's."),
    registration: z
      .object({
        claim: z.string().min(1).describe("The claim that carries the registration number."),
        registry: z.string().min(1).describe("The registry that number belongs to (BIG, RIZIV, …)."),
      })
      .optional()
      .describe(
        "Where the identity provider asserts a registration number. Without it, clinicians enter " +
          "their number once (the bot or the API); it is checked against the registry either way.",
      )
      .meta({ examples: [{ claim: "big_number", registry: "BIG" }] }),
  })
  .describe(
    "Single sign-on with the organisation's identity provider: an account it created is " +
      "identity-proven by the organisation (docs/identity.md).",
  );
export type SsoIdentityConfig = z.output<typeof SsoIdentityConfigSchema>;

export const IdentityConfigSchema = z
  .object({
    registries: RegistriesConfigSchema,
    require_id_document: z
      .boolean()
      .default(true)
      .describe(
        "Ask a self-registered clinician for an ID document after a successful registry check; the " +
          "organisation's admin reviews it (approve/reject) before the first verification. The document is " +
          "deleted after the decision. Accounts of the organisation's single sign-on are never asked.",
      ),
    duplicate_number: z
      .enum(["refuse", "review"])
      .default("refuse")
      .describe(
        "A registration number already bound to another account of this organisation: refuse the claim " +
          "(409 ORG.MEDMESH.NUMBER_IN_USE, nothing stored), or send it to the admin's review with the " +
          "conflict shown (an ID document is asked for first).",
      ),
    id_document: z
      .object({
        max_bytes: z
          .number()
          .int()
          .positive()
          .default(10 * 1024 * 1024)
          .describe("Largest accepted upload."),
        content_types: z
          .array(z.string())
          .default(["image/jpeg", "image/png", "application/pdf"])
          .describe("Accepted document types."),
      })
      .prefault({})
      .describe("ID document uploads."),
    validity_hours: z
      .number()
      .positive()
      .default(720)
      .describe("How long one successful registry check keeps a clinician verified (re-checks extend it)."),
    reverify: z
      .object({
        schedule: z.string().default("0 3 * * *").describe("Cron schedule of the re-verification run."),
        concurrency: z.number().int().positive().default(16).describe("Registry look-ups in flight at once."),
        rate_per_second: z.number().positive().default(50).describe("Registry look-ups per second at most."),
      })
      .prefault({})
      .describe("Continuous re-verification against the registries (one instance runs it: leader lease)."),
    bot: z
      .boolean()
      .default(true)
      .describe(
        "Whether this replica may run the policy module's end-to-end encrypting bots (the verification " +
          "bot's direct chats — `verify BIG <number>`, status notices to users and admins — the channel bot " +
          "and the department accounts): it is a candidate for their leader (job `e2ee-bots`), which runs " +
          "them all. false: never here (it still records what they are sent and queues what they must say, " +
          "for the replica that runs them); with no replica allowed, they do not run.",
      ),
    sso: SsoIdentityConfigSchema.optional(),
    remote_refresh_seconds: z
      .number()
      .positive()
      .default(300)
      .describe(
        "How long another organisation's attestation is trusted before it is fetched again; the badges " +
          "this organisation shows for other organisations' users are re-checked at least this often.",
      ),
    attestation_ttl_seconds: z
      .number()
      .int()
      .positive()
      .default(3600)
      .describe(
        "Lifetime of the attestations this organisation signs (never past the verification's own expiry). " +
          "Peers refresh the ones they show before they run out; an expired one shows unverified.",
      ),
    remote_check_seconds: z
      .number()
      .positive()
      .default(5)
      .describe("How often one instance looks for other organisations' badges due for a refresh."),
    revocation: z
      .object({
        initial_backoff_seconds: z
          .number()
          .positive()
          .default(1)
          .describe("First retry of a notice a peer did not take; doubled per attempt."),
        max_backoff_seconds: z
          .number()
          .positive()
          .default(300)
          .describe("Longest wait between two attempts to deliver a notice to one peer."),
        give_up_hours: z
          .number()
          .positive()
          .default(72)
          .describe(
            "A notice a peer has not taken by then is given up (logged, audited); its attestations have run out.",
          ),
        timeout_ms: z.number().int().positive().default(5000).describe("How long one delivery may take."),
      })
      .prefault({})
      .describe(
        "Revocation notices: when a clinician loses verified status, a signed notice is pushed to every " +
          "trusted peer (durable outbox, retried with backoff).",
      ),
    verified_clinicians: z
      .array(VerifiedClinicianSchema)
      .default([])
      .describe(
        "Clinicians the organisation's admin has checked by hand, verified without a registry look-up " +
          "(interim, for networks without a registry adapter).",
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
  .describe("Clinician identity: registry verification, re-verification and attestations.");
export type IdentityConfig = z.output<typeof IdentityConfigSchema>;

/** The organisation's own verified clinicians, as the directory lists them. */
export interface LocalClinicians extends Verification {
  all(): readonly VerifiedClinician[];
  get(userId: string): VerifiedClinician | undefined;
  /** Changes whenever the set changes, so a search index knows when to rebuild. */
  version(): number;
}

export function configuredClinicians(config: IdentityConfig): LocalClinicians {
  const byId = new Map(config.verified_clinicians.map((c) => [c.user_id, c]));
  return {
    isVerified: (userId) => Promise.resolve(byId.has(userId)),
    all: () => [...byId.values()],
    get: (userId) => byId.get(userId),
    version: () => 0,
  };
}
