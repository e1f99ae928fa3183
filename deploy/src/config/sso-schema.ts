import { pluginFor } from "@medmesh/policy-module";
import { z } from "zod";

/** An organisation's single sign-on with its identity provider (docs/identity.md). */

// A claim name as Synapse's Jinja templates read it (user["…"]): no quotes, braces or spaces.
const claimName = z
  .string()
  .regex(/^[^"'\\{}%\s]{1,128}$/, "must be a claim name (no quotes, braces, % or spaces)");

export const SsoSchema = z
  .object({
    issuer: z
      .url({ protocol: /^https?$/ })
      .describe(
        "The identity provider's issuer URL (OIDC discovery at /.well-known/openid-configuration). " +
          "https; plain http only for a loopback test provider in the 'test' profile.",
      )
      .meta({ examples: ["https://login.hospital-a.example/realms/staff"] }),
    client_id: z
      .string()
      .min(1)
      .describe("The client registered at the identity provider for this organisation's Synapse.")
      .meta({ examples: ["medmesh-synapse"] }),
    client_secret_file: z
      .string()
      .min(1)
      .describe(
        "File holding the client secret (relative to this config). Read at generation time and " +
          "written for Synapse to its secrets folder (mode 0600); never a literal in this file.",
      )
      .meta({ examples: ["../../deploy/docker/secrets/oidc_client_secret"] }),
    client_auth_method: z
      .enum(["client_secret_basic", "client_secret_post"])
      .default("client_secret_basic")
      .describe("How Synapse authenticates at the token endpoint."),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, "must be an OAuth scope"))
      .default(["openid", "profile"])
      .refine((s) => s.includes("openid"), "must include openid")
      .describe("Scopes Synapse asks for; openid is required."),
    user_profile_method: z
      .enum(["auto", "userinfo_endpoint"])
      .default("auto")
      .describe(
        "Where the claims come from: the ID token (auto) or the userinfo endpoint (for providers " +
          "that put only `sub` in the ID token).",
      ),
    claims: z
      .object({
        localpart: claimName
          .default("preferred_username")
          .describe("Claim for the Matrix user name; an e-mail-like value keeps the part before @."),
        display_name: claimName.default("name").describe("Claim for the display name."),
        name: claimName
          .default("name")
          .describe("Claim with the person's name as the registry should list it (the name check)."),
        registration_number: z
          .object({
            claim: claimName.describe("The claim carrying the registration number."),
            registry: z
              .string()
              .min(1)
              .describe("The registry it belongs to: one of identity.registries (BIG, RIZIV, DEMO, …)."),
          })
          .optional()
          .describe(
            "Where the identity provider asserts the registration number; without it clinicians " +
              "enter it once. It is checked against the registry either way.",
          )
          .meta({ examples: [{ claim: "big_number", registry: "BIG" }] }),
      })
      .prefault({})
      .describe("Which claims of the identity provider MedMesh uses."),
    password_login: z
      .boolean()
      .default(true)
      .describe(
        "Allow password login beside single sign-on. false: Synapse refuses m.login.password, so " +
          "only the identity provider signs people in (MedMesh's own accounts use appservice login).",
      ),
    client_redirect_urls: z
      .array(z.url({ protocol: /^https?$/ }))
      .default([])
      .describe(
        "Client URLs (prefixes) Synapse may send the login token to without asking the person " +
          "first (Synapse's sso.client_whitelist), e.g. the organisation's Element.",
      )
      .meta({ examples: [["https://chat.hospital-a.example/"]] }),
  })
  .describe(
    "Single sign-on with the organisation's identity provider (OIDC, authorization code with PKCE): " +
      "accounts it creates count as identity-proven by the organisation (docs/identity.md).",
  );

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

/** What a schema alone cannot say about an organisation's sso section. */
export function ssoProblems(
  cfg: { profile: string; identity: { registries: Record<string, unknown> } },
  org: { sso?: z.output<typeof SsoSchema> | undefined; demo_users: unknown[] },
  path: (string | number)[],
  ctx: z.RefinementCtx,
): void {
  const sso = org.sso;
  if (!sso) return;
  const issuer = new URL(sso.issuer);
  if (issuer.protocol === "http:" && !(cfg.profile === "test" && LOOPBACK.test(issuer.hostname))) {
    ctx.addIssue({
      code: "custom",
      path: [...path, "issuer"],
      message: "must be https (plain http only for a loopback test identity provider in the 'test' profile)",
    });
  }
  const registration = sso.claims.registration_number;
  if (registration) {
    // The registry plug-ins say which names they answer for; an extract without its registry
    // named can only tell from its file, so it is given the benefit of the doubt.
    if (pluginFor(cfg.identity.registries, registration.registry) === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [...path, "claims", "registration_number", "registry"],
        message: `${registration.registry} is not a registry of identity.registries (none of the configured registry plug-ins answers for it)`,
      });
    }
  }
  if (!sso.password_login && org.demo_users.length > 0) {
    ctx.addIssue({
      code: "custom",
      path: [...path, "password_login"],
      message: "is false, but demo_users sign in with passwords: remove them or allow password login",
    });
  }
}
