import { join } from "node:path";
import type { OrganisationPaths } from "./synapse/homeserver-config.ts";

/** Where the generated files of one organisation live, below the network's data folder. */
export function organisationPaths(dataDir: string, orgId: string): OrganisationPaths {
  const root = join(dataDir, orgId);
  const synapseDir = join(root, "synapse");
  const secrets = join(root, "secrets");
  const appserviceDir = join(root, "appservices");
  return {
    root,
    synapseDir,
    homeserverYaml: join(synapseDir, "homeserver.yaml"),
    logConfig: join(synapseDir, "log.config"),
    logFile: join(synapseDir, "homeserver.log"),
    pidFile: join(synapseDir, "homeserver.pid"),
    signingKey: join(secrets, "signing.key"),
    mediaStore: join(synapseDir, "media"),
    sqliteDb: join(synapseDir, "homeserver.db"),
    registrationSecret: join(secrets, "registration_shared_secret"),
    macaroonSecret: join(secrets, "macaroon_secret_key"),
    formSecret: join(secrets, "form_secret"),
    decisionToken: join(secrets, "decision-token"),
    appserviceDir,
    policyModuleRegistration: join(appserviceDir, "policy-module.yaml"),
    bridgeRegistration: join(appserviceDir, "bridge.yaml"),
    policyModuleConfig: join(root, "policy-module.yaml"),
    bridgeConfig: join(root, "bridge.yaml"),
    storeDir: join(root, "store"),
    // Beside the store, not in it: whoever edits the audit table cannot rewrite these in step.
    auditAnchors: join(root, "audit-anchors.jsonl"),
    tlsDir: join(root, "tls"),
    federationWhitelist: join(synapseDir, "federation-whitelist.yaml"),
    organisationKey: join(secrets, "organisation.jwk.json"),
    bridgeSigningKey: join(secrets, "bridge-signing.pem"),
    policyModuleAdminToken: join(secrets, "policy-module-admin-token"),
    bridgeAdminToken: join(secrets, "bridge-admin-token"),
    demoVendorKey: join(secrets, "demo-vendor.pem"),
    demoVendorData: join(root, "demo-vendor.sqlite"),
    oidcClientSecret: join(secrets, "oidc-client-secret"),
  };
}
