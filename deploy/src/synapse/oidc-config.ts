import type { OrganisationConfig } from "../config/schema.ts";

/** Synapse's ID of the organisation's identity provider (Synapse prefixes "oidc-" itself). */
export const idpIdOf = (org: Pick<OrganisationConfig, "id">): string => `oidc-${org.id}`;

/** The claim as Synapse's Jinja templates read it; a missing claim renders as "". */
const claim = (name: string): string => `(user[${JSON.stringify(name)}] or "")`;

/** The claims Synapse's mapping provider forwards to MedMesh: only those MedMesh uses. */
export function forwardedClaims(sso: NonNullable<OrganisationConfig["sso"]>): string[] {
  const registration = sso.claims.registration_number;
  return [...new Set([sso.claims.name, ...(registration ? [registration.claim] : [])])];
}

/** Where Synapse sends the browser back to after an SSO sign-in to the admin console. */
export const CONSOLE_SIGN_IN = "_medmesh/console/sign-in";

/**
 * The homeserver.yaml sections for the organisation's single sign-on: `oidc_providers` (authorization
 * code with PKCE always; the MedMesh mapping provider, which forwards the configured claims to the
 * policy module and leaves user names and display names to Synapse's own Jinja templates),
 * `password_config` where password login is off, and `sso.client_whitelist`. Empty without `sso`.
 */
export function oidcSections(i: {
  org: OrganisationConfig;
  clientSecretFile: string;
  decisionUrl: string;
  decisionTokenFile: string;
  /** The organisation's public client URL (public_baseurl): its admin console signs in through SSO too. */
  publicBaseUrl: string;
}): Record<string, unknown> {
  const sso = i.org.sso;
  if (!sso) return {};
  const issuer = new URL(sso.issuer);
  return {
    oidc_providers: [
      {
        idp_id: i.org.id,
        idp_name: i.org.name,
        issuer: sso.issuer,
        discover: true,
        client_id: sso.client_id,
        client_secret_path: i.clientSecretFile,
        client_auth_method: sso.client_auth_method,
        scopes: sso.scopes,
        pkce_method: "always",
        user_profile_method: sso.user_profile_method,
        // Only the schema allows plain http, for a loopback test identity provider in the test
        // profile; Synapse's metadata checks would refuse its http issuer.
        ...(issuer.protocol === "http:" ? { skip_verification: true } : {}),
        // An account belongs to the identity provider's subject from its first login on; an
        // existing (password) account is never taken over by a matching user name.
        allow_existing_users: false,
        enable_registration: true,
        user_mapping_provider: {
          module: "medmesh_synapse.oidc.MedMeshOidcMapping",
          config: {
            decision_url: i.decisionUrl,
            token_file: i.decisionTokenFile,
            timeout_ms: 2000,
            idp_id: idpIdOf(i.org),
            forward_claims: forwardedClaims(sso),
            localpart_template: `{{ ${claim(sso.claims.localpart)} | localpart_from_email }}`,
            display_name_template: `{{ ${claim(sso.claims.display_name)} }}`,
          },
        },
      },
    ],
    ...(sso.password_login ? {} : { password_config: { enabled: false } }),
    // The admin console's sign-in page takes the login token without Synapse's "continue to" page.
    sso: { client_whitelist: [...sso.client_redirect_urls, new URL(CONSOLE_SIGN_IN, i.publicBaseUrl).href] },
  };
}
