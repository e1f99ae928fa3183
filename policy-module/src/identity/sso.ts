import type { Knex } from "knex";
import type { Logger } from "pino";
import type { AuditLog, SynapseAdmin } from "@medmesh/common";
import type { Decision } from "../proxy/policy.ts";
import type { SsoIdentityConfig } from "./verification.ts";
import type { Verifier } from "./verifier.ts";

/** What the organisation's identity provider asserted about one subject, and the account it is. */
export interface SsoIdentity {
  idp_id: string;
  /** The identity provider's own ID for the person (Synapse's external_id). */
  subject: string;
  user_id: string | null;
  registration_number: string | null;
  name: string | null;
  claims_at: Date;
  linked_at: Date | null;
}

/** The sso_identities table (common store migration 14). */
export function ssoIdentities(knex: Knex) {
  const table = () => knex<SsoIdentity>("sso_identities");
  return {
    async get(idpId: string, subject: string): Promise<SsoIdentity | undefined> {
      return table().where({ idp_id: idpId, subject }).first();
    },
    async putClaims(
      idpId: string,
      subject: string,
      claims: { registration_number: string | null; name: string | null },
      now: Date,
    ): Promise<void> {
      await table()
        .insert({ idp_id: idpId, subject, ...claims, claims_at: now })
        .onConflict(["idp_id", "subject"])
        .merge(["registration_number", "name", "claims_at"]);
    },
    async link(idpId: string, subject: string, userId: string, now: Date): Promise<void> {
      await table()
        .insert({ idp_id: idpId, subject, user_id: userId, claims_at: now, linked_at: now })
        .onConflict(["idp_id", "subject"])
        .merge(["user_id", "linked_at"]);
    },
    async forUser(userId: string): Promise<SsoIdentity | undefined> {
      return table().where({ user_id: userId }).orderBy("linked_at", "desc").first();
    },
  };
}
export type SsoIdentities = ReturnType<typeof ssoIdentities>;

/** sso_claims: Synapse's OIDC mapping provider forwards the configured claims of every SSO login. */
export interface SsoClaimsQuestion {
  idp_id: string;
  subject: string;
  claims: Record<string, unknown>;
}

/** sso_login: Synapse completed an SSO login of this account (on_user_login, type m.login.sso). */
export interface SsoLoginQuestion {
  user_id: string;
  idp_id: string;
}

export interface SingleSignOn {
  claims(q: SsoClaimsQuestion): Promise<Decision>;
  login(q: SsoLoginQuestion): Promise<Decision>;
  /** The identity provider that proved who this user is, if their account came from its SSO. */
  identityProvider(userId: string): Promise<string | undefined>;
}

const claimText = (v: unknown): string | null => {
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v !== "string") return null;
  const t = v.trim();
  // Bounded: it is stored and shown in reasons; a registration number or a name is never long.
  return t && t.length <= 256 ? t : null;
};

/**
 * Single sign-on with the organisation's identity provider. Synapse runs the OIDC flow and keeps
 * the account ↔ subject binding (its external_ids); MedMesh learns the claims from the mapping
 * provider's question and which account they belong to from Synapse's admin API when the login
 * completes. The registration number from the claim is then checked against the registry like a
 * typed one, in the background (the login does not wait for the registry).
 */
export function createSingleSignOn(deps: {
  config: SsoIdentityConfig;
  identities: SsoIdentities;
  admin: SynapseAdmin;
  verifier: Verifier;
  audit: AuditLog;
  log: Logger;
}): SingleSignOn & { settled(): Promise<void> } {
  const { config } = deps;
  const pending = new Set<Promise<void>>();
  const notOurs = (idpId: string): Decision => ({
    allowed: false,
    reason: `${idpId} is not ${config.organisation_name}'s identity provider`,
  });

  const checkRegistration = async (userId: string, identity: SsoIdentity): Promise<void> => {
    const registration = config.registration;
    if (!registration || identity.registration_number === null) return; // entered once by the user
    await deps.verifier.fromOrganisation(
      userId,
      {
        registry: registration.registry,
        number: identity.registration_number,
        claimed_name: identity.name ?? "",
      },
      config.idp_id,
    );
  };

  return {
    async claims(q) {
      if (q.idp_id !== config.idp_id) return notOurs(q.idp_id);
      await deps.identities.putClaims(
        q.idp_id,
        q.subject,
        {
          registration_number: config.registration ? claimText(q.claims[config.registration.claim]) : null,
          name: claimText(q.claims[config.name_claim]),
        },
        new Date(),
      );
      return { allowed: true };
    },

    async login(q) {
      if (q.idp_id !== config.idp_id) return notOurs(q.idp_id);
      // Synapse's own record of which subject this account is: the binding MedMesh trusts.
      const user = await deps.admin.request<{
        external_ids?: { auth_provider?: string; external_id?: string }[];
      }>("GET", `/_synapse/admin/v2/users/${encodeURIComponent(q.user_id)}`);
      const subject = user.external_ids?.find((e) => e.auth_provider === q.idp_id)?.external_id;
      if (subject === undefined) {
        return {
          allowed: false,
          reason: `This account is not linked to ${config.organisation_name}'s identity provider`,
        };
      }
      const now = new Date();
      await deps.identities.link(q.idp_id, subject, q.user_id, now);
      const identity = await deps.identities.get(q.idp_id, subject);
      await deps.audit.record({
        actor: q.user_id,
        on_behalf_of: q.user_id,
        action: "identity.sso_login",
        object: q.user_id,
        outcome: "identity_proven",
        details: {
          identity_provider: q.idp_id,
          registration_claim: identity?.registration_number ? "present" : "absent",
        },
      });
      if (identity) {
        const run = checkRegistration(q.user_id, identity)
          .catch((err: unknown) => {
            deps.log.warn({ err, user_id: q.user_id }, "could not check the registration from SSO claims");
          })
          .finally(() => pending.delete(run));
        pending.add(run);
      }
      return { allowed: true };
    },

    async identityProvider(userId) {
      const found = await deps.identities.forUser(userId);
      return found?.idp_id === config.idp_id ? found.idp_id : undefined;
    },

    /** Resolves when the background registry checks started so far have ended (tests, shutdown). */
    async settled() {
      await Promise.all([...pending]);
    },
  };
}
