import type { DeploymentConfig, OrganisationConfig } from "../config/schema.ts";
import { oidcSections } from "./oidc-config.ts";

/** Where the generated files of one organisation live; see deploy/src/generate.ts. */
export interface OrganisationPaths {
  root: string;
  synapseDir: string;
  homeserverYaml: string;
  logConfig: string;
  logFile: string;
  pidFile: string;
  signingKey: string;
  mediaStore: string;
  sqliteDb: string;
  registrationSecret: string;
  macaroonSecret: string;
  formSecret: string;
  /** Token Synapse's MedMesh module presents to the policy module's decision API. */
  decisionToken: string;
  appserviceDir: string;
  policyModuleRegistration: string;
  bridgeRegistration: string;
  policyModuleConfig: string;
  bridgeConfig: string;
  storeDir: string;
  auditAnchors: string;
  tlsDir: string;
  /** Synapse config fragment with federation_domain_whitelist, kept by the policy module. */
  federationWhitelist: string;
  /** The organisation's Ed25519 key (private JWK): peer requests and attestations. */
  organisationKey: string;
  bridgeSigningKey: string;
  /** The bearer tokens of the services' admin API and /metrics (admin.token_file). */
  policyModuleAdminToken: string;
  bridgeAdminToken: string;
  demoVendorKey: string;
  demoVendorData: string;
  /** The client secret of the organisation's identity provider (copied from sso.client_secret_file). */
  oidcClientSecret: string;
}

export interface HomeserverInputs {
  deployment: DeploymentConfig;
  org: OrganisationConfig;
  serverName: string;
  paths: OrganisationPaths;
  federationCaFiles: string[];
  /** Where Synapse's listeners bind: loopback, or the container network when in containers. */
  bindAddress: string;
  /** The public client URL (the MedMesh proxy) when public_baseurl is not configured. */
  clientUrl: string;
  /** The policy module's internal listener, where Synapse's MedMesh module asks for decisions. */
  decisionUrl: string;
  /** The proxy's media_body_bytes: Synapse accepts exactly the uploads the proxy lets through. */
  maxUploadBytes: number;
}

// Generous enough that an automated suite never trips them, still finite. Only in the 'test'
// profile: the production sample keeps Synapse's defaults.
const TEST_PROFILE_RATE_LIMITS = {
  rc_message: { per_second: 1000, burst_count: 1000 },
  rc_registration: { per_second: 1000, burst_count: 1000 },
  rc_login: {
    address: { per_second: 1000, burst_count: 1000 },
    account: { per_second: 1000, burst_count: 1000 },
    failed_attempts: { per_second: 1000, burst_count: 1000 },
  },
  rc_joins: {
    local: { per_second: 1000, burst_count: 1000 },
    remote: { per_second: 1000, burst_count: 1000 },
  },
  rc_joins_per_room: { per_second: 1000, burst_count: 1000 },
  rc_invites: {
    per_room: { per_second: 1000, burst_count: 1000 },
    per_user: { per_second: 1000, burst_count: 1000 },
    per_issuer: { per_second: 1000, burst_count: 1000 },
  },
  rc_room_creation: { per_second: 1000, burst_count: 1000 },
  rc_key_requests: { per_second: 1000, burst_count: 1000 },
  rc_federation: {
    window_size: 1000,
    sleep_limit: 1000,
    sleep_delay: 1,
    reject_limit: 1000,
    concurrent: 100,
  },
  rc_media_create: { per_second: 1000, burst_count: 1000 },
  rc_profile: { per_second: 1000, burst_count: 1000 },
  rc_user_directory: { per_second: 1000, burst_count: 1000 },
  // Password hashing at bcrypt's minimum cost: suites and benches register thousands of accounts
  // (12 rounds, Synapse's default, cost ~0.25 s of a core each). Production keeps the default.
  bcrypt_rounds: 4,
  // A peer's Synapse restarting (trust list change) must not park federation for 10 minutes.
  federation: {
    destination_min_retry_interval: "1s",
    destination_retry_multiplier: 1.5,
    destination_max_retry_interval: "5s",
  },
};

export function homeserverConfig(i: HomeserverInputs): Record<string, unknown> {
  const { org, paths, deployment } = i;
  // Both listeners are plain HTTP and private: every request reaches them through the MedMesh
  // policy proxy, which terminates federation TLS and sets X-Forwarded-For.
  const listener = (port: number, resource: string) => ({
    port,
    bind_addresses: [i.bindAddress],
    type: "http",
    tls: false,
    x_forwarded: true,
    resources: [{ names: [resource], compress: false }],
  });
  return {
    server_name: i.serverName,
    pid_file: paths.pidFile,
    public_baseurl: org.public_baseurl ?? `${i.clientUrl}/`,
    listeners: [
      listener(org.ports.synapse_client, "client"),
      listener(org.ports.synapse_federation, "federation"),
    ],
    // Outbound federation verifies peers' certificates, trusting the network's CA list.
    federation_verify_certificates: true,
    federation_custom_ca_list: i.federationCaFiles,
    // Synapse refuses outbound requests to private ranges by default; a loopback network needs
    // exactly loopback allowed, nothing wider.
    ip_range_whitelist: ["127.0.0.0/8", "::1/128"],
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    database: databaseSection(i),
    log_config: paths.logConfig,
    media_store_path: paths.mediaStore,
    // The same cap as the proxy's (media_body_bytes): a larger upload is refused at the edge with
    // 413, and Synapse never refuses one the proxy has already streamed to it.
    max_upload_size: i.maxUploadBytes,
    signing_key_path: paths.signingKey,
    registration_shared_secret_path: paths.registrationSecret,
    macaroon_secret_key_path: paths.macaroonSecret,
    form_secret_path: paths.formSecret,
    enable_registration: false,
    report_stats: false,
    app_service_config_files: [paths.policyModuleRegistration, paths.bridgeRegistration],
    // The rules that must hold on every path are decided at Synapse's own decision points: the
    // module (policy-module/synapse-module) asks the policy module and fails closed.
    modules: [
      {
        module: "medmesh_synapse.MedMeshPolicy",
        config: {
          decision_url: i.decisionUrl,
          token_file: paths.decisionToken,
          timeout_ms: 2000,
          // TI-M's room type and defaults at creation (docs/tim-profile.md).
          room_defaults: org.profile !== "medmesh",
          // TI-M: a message into a room with a member on a server off the trust list gets a 403.
          room_servers: org.profile !== "medmesh",
        },
      },
    ],
    // Who may list a room in the directory is MedMesh's decision (user_may_publish_room: verified
    // clinicians); Synapse's own default would refuse everyone.
    room_list_publication_rules: [{ action: "allow" }],
    // Retention: redacted content must actually leave the database soon after the sweep.
    redaction_retention_period: deployment.redaction_retention_period,
    // The retention sweep redacts in bulk as an admin; it must not be throttled like chat.
    rc_admin_redaction: { per_second: 50, burst_count: 500 },
    // Push gateways are third parties: never hand them message content.
    push: { include_content: false },
    url_preview_enabled: false,
    // TI-M (Matrix v1.11) still serves the legacy /_matrix/media/v3/download without a token.
    enable_authenticated_media: org.profile === "medmesh",
    presence: { enabled: false },
    // Dehydrated devices (MSC3814): an account with no device online still receives room keys,
    // and its next device takes them over (docs/tim-driver.md).
    // `state_after` in /sync (MSC4222, asked for by matrix-js-sdk and so Element): without it a
    // room whose history forked (a remote join made before that server saw a local invite) can
    // have an older member event sent in an incremental sync's `state`, after the newer one in
    // the previous timeline, and the client shows the stale membership (docs/federation.md).
    experimental_features: { msc3814_enabled: true, msc4222_enabled: true },
    // Second line behind the proxy's policies: every locally created room is encrypted, and
    // profiles and the user directory show only people one shares a room with (the proxy answers
    // verified clinicians from the verified directory itself).
    // TI-M: public rooms are unencrypted, private ones encrypted (docs/tim-profile.md).
    encryption_enabled_by_default_for_room_type: org.profile === "medmesh" ? "all" : "invite",
    require_auth_for_profile_requests: true,
    limit_profile_requests_to_users_who_share_rooms: true,
    user_directory: { enabled: true, search_all_users: false },
    serve_server_wellknown: false,
    // Single sign-on with the organisation's identity provider, where it has one.
    ...oidcSections({
      org,
      publicBaseUrl: org.public_baseurl ?? `${i.clientUrl}/`,
      clientSecretFile: paths.oidcClientSecret,
      decisionUrl: i.decisionUrl,
      decisionTokenFile: paths.decisionToken,
    }),
    ...(deployment.profile === "test" ? TEST_PROFILE_RATE_LIMITS : {}),
  };
}

function databaseSection(i: HomeserverInputs): Record<string, unknown> {
  const db = i.org.database;
  if (db.type === "sqlite") return { name: "sqlite3", args: { database: i.paths.sqliteDb } };
  return {
    name: "psycopg2",
    args: {
      host: db.host,
      port: db.port,
      user: db.user,
      ...(db.password === undefined ? {} : { password: db.password }),
      dbname: db.database,
      cp_min: 2,
      cp_max: 10,
    },
  };
}

export function logConfig(logFile: string): Record<string, unknown> {
  return {
    version: 1,
    formatters: {
      precise: { format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" },
    },
    handlers: {
      file: {
        class: "logging.handlers.RotatingFileHandler",
        formatter: "precise",
        filename: logFile,
        maxBytes: 50 * 1024 * 1024,
        backupCount: 3,
        encoding: "utf8",
      },
    },
    loggers: { "synapse.storage.SQL": { level: "INFO" } },
    root: { level: "INFO", handlers: ["file"] },
    disable_existing_loggers: false,
  };
}

export function hostForUrl(address: string): string {
  if (address === "0.0.0.0") return "127.0.0.1";
  if (address === "::") return "[::1]";
  return address.includes(":") ? `[${address}]` : address;
}
