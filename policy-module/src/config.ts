import { ServiceConfigSchema } from "@medmesh/common";
import { z } from "zod";
import { AuditConfigSchema } from "./audit/config.ts";
import { ConsoleConfigSchema } from "./console/config.ts";
import { DirectoryConfigSchema } from "./directory/index.ts";
import { IdentityConfigSchema } from "./identity/verification.ts";
import { RetentionConfigSchema } from "./retention/config.ts";
import { OrgInvitePolicySchema } from "./invites/index.ts";
import { ProxyConfigSchema } from "./proxy/index.ts";
import { ProfileSchema } from "./rooms/profile.ts";
import { missingTrustProblem, TrustConfigSchema } from "./trust/index.ts";

export const PolicyModuleConfigSchema = ServiceConfigSchema.extend({
  profile: ProfileSchema,
  proxy: ProxyConfigSchema.optional(),
  synapse_admin: z
    .object({
      registration_shared_secret: z
        .string()
        .min(1)
        .describe(
          "Synapse's registration_shared_secret: MedMesh creates and logs in its own admin account with it.",
        )
        .meta({ examples: ["${file:/run/secrets/registration_shared_secret}"] }),
      login: z
        .enum(["password", "appservice"])
        .default("password")
        .describe(
          "How MedMesh's admin account logs in: with the password derived from the secret, or as " +
            "the policy module's appservice (its registration must list @medmesh-admin in a " +
            "non-exclusive namespace; needed where password login is switched off).",
        ),
    })
    .optional()
    .describe(
      "Access to Synapse's admin API (required with the proxy: invite permissions read account data).",
    ),
  organisation: z
    .object({
      signing_key_file: z
        .string()
        .describe("The organisation's Ed25519 private JWK; its public half is on the trust list.")
        .meta({ examples: ["/etc/medmesh/secrets/organisation.jwk.json"] }),
      ca_files: z
        .array(z.string())
        .default([])
        .describe("Extra CA certificates trusted for other organisations' federation endpoints."),
    })
    .optional()
    .describe("The organisation's identity towards other organisations' MedMesh services."),
  synapse_module: z
    .object({
      token_file: z
        .string()
        .min(1)
        .describe(
          "File holding the token Synapse's MedMesh module presents (the same file its config names).",
        )
        .meta({ examples: ["/etc/medmesh/secrets/decision-token"] }),
    })
    .optional()
    .describe(
      "The decision API Synapse's MedMesh module calls at Synapse's own decision points " +
        "(invites, room creation, joins, room directory, guarded state events); required with the proxy.",
    ),
  trust: TrustConfigSchema.optional(),
  identity: IdentityConfigSchema.prefault({}),
  retention: RetentionConfigSchema.prefault({}),
  invites: OrgInvitePolicySchema.prefault({}),
  directory: DirectoryConfigSchema.prefault({}),
  audit: AuditConfigSchema.prefault({}),
  console: ConsoleConfigSchema.prefault({}),
}).superRefine((c, ctx) => {
  if (c.audit.anchor_file && !c.organisation) {
    ctx.addIssue({
      code: "custom",
      path: ["audit", "anchor_file"],
      message: "needs organisation (its signing key signs the anchors)",
    });
  }
  if (c.proxy && !c.synapse_admin) {
    ctx.addIssue({
      code: "custom",
      path: ["synapse_admin"],
      message: "is required when the proxy is configured",
    });
  }
  if (c.proxy && !c.synapse_module) {
    ctx.addIssue({
      code: "custom",
      path: ["synapse_module"],
      message:
        "is required when the proxy is configured (without it Synapse's module refuses every guarded action)",
    });
  }
  const trustProblem = c.proxy ? missingTrustProblem(c.trust) : undefined;
  if (trustProblem) ctx.addIssue({ code: "custom", path: ["trust"], message: trustProblem });
});
export type PolicyModuleConfig = z.output<typeof PolicyModuleConfigSchema>;
