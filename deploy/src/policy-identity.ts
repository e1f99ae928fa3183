import { configuredPlugins, type PolicyModuleConfig } from "@medmesh/policy-module";
import type { DeploymentConfig, OrganisationConfig } from "./config/schema.ts";
import { serverNameOf } from "./config/schema.ts";
import { idpIdOf } from "./synapse/oidc-config.ts";

/**
 * The policy module's `identity` section for one organisation: the deployment's identity settings,
 * each registry plug-in's file fields resolved (`file`: a path of the deployment config as the
 * service sees it), the organisation's own review rules, single sign-on and hand-checked clinicians.
 */
export function policyIdentity(
  deployment: DeploymentConfig,
  org: OrganisationConfig,
  file: (path: string) => string,
): PolicyModuleConfig["identity"] {
  return {
    ...deployment.identity,
    // Each plug-in names its file fields; they are resolved against the deployment config.
    registries: Object.fromEntries(
      configuredPlugins(deployment.identity.registries).map(({ plugin, config }) => {
        const section = { ...(config as Record<string, unknown>) };
        for (const field of plugin.fileFields) {
          const value = section[field];
          if (typeof value === "string") section[field] = file(value);
        }
        return [plugin.id, section];
      }),
    ),
    require_id_document: org.require_id_document,
    duplicate_number: org.duplicate_number,
    ...(org.sso
      ? {
          sso: {
            idp_id: idpIdOf(org),
            organisation_name: org.name,
            name_claim: org.sso.claims.name,
            ...(org.sso.claims.registration_number
              ? { registration: org.sso.claims.registration_number }
              : {}),
          },
        }
      : {}),
    verified_clinicians: org.verified_clinicians.map((c) => ({
      user_id: `@${c.localpart}:${serverNameOf(org)}`,
      display_name: c.display_name,
      profession: c.profession,
    })),
  };
}
