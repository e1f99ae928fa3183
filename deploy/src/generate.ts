import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { generateKey, synapseWhitelistYaml, type PolicyModuleConfig } from "@medmesh/policy-module";
import { InteropConfigSchema, type BridgeConfig } from "@medmesh/bridge";
import type { DeploymentConfig, OrganisationConfig } from "./config/schema.ts";
import { serverNameOf } from "./config/schema.ts";
import { copySecretFile, ensureSecretFile, randomToken, synapseSigningKey } from "./secrets.ts";
import {
  homeserverConfig,
  hostForUrl,
  logConfig,
  type OrganisationPaths,
} from "./synapse/homeserver-config.ts";
import { ensureLocalCa, ensureServerCertificate } from "./tls/local-ca.ts";
import { signLocalTrustList, trustFiles, type TrustFiles } from "./local-trust.ts";
import { organisationPaths } from "./paths.ts";
import { policyIdentity } from "./policy-identity.ts";
import { proxyLimits } from "./proxy-limits.ts";
import { generateWorkers, withWorkers, type GeneratedWorkers } from "./workers/generate-workers.ts";

export { organisationPaths };

export interface GeneratedOrganisation {
  org: OrganisationConfig;
  serverName: string;
  paths: OrganisationPaths;
  /** The client API as clients reach it: the MedMesh policy proxy. */
  clientUrl: string;
  /** Synapse's own client listener (loopback), for MedMesh and admin tooling only. */
  synapseUrl: string;
  federationUrl: string;
  /** The services' internal listeners (health; metrics and admin API with the admin token). */
  policyModuleUrl: string;
  bridgeUrl: string;
  /** The bridge's public listener: the interop API vendors call. */
  bridgeInteropUrl: string;
  /** Each service's admin token file, by service name (its admin API and /metrics). */
  adminTokenFiles: { "policy-module": string; bridge: string };
  /** Synapse's worker processes, when the organisation runs workers (started after the main process). */
  workers?: GeneratedWorkers["processes"];
  policyModule: PolicyModuleConfig;
  bridge: BridgeConfig;
}

export interface GeneratedNetwork {
  dataDir: string;
  caCertificate: string;
  organisations: GeneratedOrganisation[];
}

/**
 * Generates everything a network's homeservers and MedMesh services need: a local CA, and per
 * organisation the Synapse config, signing key, secrets, TLS certificate, appservice registrations
 * and service configs. Idempotent: keys, secrets and tokens that exist are kept (a restart resumes
 * the same network); the YAML configs are rewritten from the deployment config every time.
 */
export async function generateNetwork(
  deployment: DeploymentConfig,
  baseDir: string,
): Promise<GeneratedNetwork> {
  const dataDir = resolve(baseDir, deployment.data_dir);
  await mkdir(dataDir, { recursive: true });
  const needsLocalCa = deployment.organisations.some((o) => !o.tls);
  const ca = needsLocalCa ? await ensureLocalCa(join(dataDir, "ca")) : undefined;
  const caFiles = [
    ...(ca ? [ca.certificate] : []),
    ...deployment.trusted_ca_files.map((f) => resolve(baseDir, f)),
  ];
  const trust = trustFiles(dataDir);
  const organisations: GeneratedOrganisation[] = [];
  for (const org of deployment.organisations) {
    organisations.push(await generateOrganisation(deployment, org, dataDir, baseDir, caFiles, ca, trust));
  }
  const listed = deployment.trust.sign_locally
    ? await signLocalTrustList(deployment, trust, organisations)
    : [];
  for (const g of organisations) {
    // Synapse's whitelist starts as the list just signed; the policy module keeps it current.
    await writeFile(g.paths.federationWhitelist, synapseWhitelistYaml(g.serverName, listed));
  }
  return { dataDir, caCertificate: caFiles[0] ?? "", organisations };
}

async function generateOrganisation(
  deployment: DeploymentConfig,
  org: OrganisationConfig,
  dataDir: string,
  baseDir: string,
  caFiles: string[],
  ca: Awaited<ReturnType<typeof ensureLocalCa>> | undefined,
  trust: TrustFiles,
): Promise<GeneratedOrganisation> {
  const serverName = serverNameOf(org);
  const paths = organisationPaths(dataDir, org.id);
  for (const dir of [paths.synapseDir, paths.mediaStore, paths.appserviceDir, paths.storeDir]) {
    await mkdir(dir, { recursive: true });
  }
  await ensureSecretFile(paths.signingKey, synapseSigningKey);
  for (const secret of [
    paths.registrationSecret,
    paths.macaroonSecret,
    paths.formSecret,
    paths.decisionToken,
    paths.policyModuleAdminToken,
    paths.bridgeAdminToken,
  ]) {
    await ensureSecretFile(secret, () => randomToken());
  }
  await ensureSecretFile(paths.organisationKey, () => JSON.stringify(generateKey().privateJwk));
  const newPem = () =>
    generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  if (org.demo_vendor) await ensureSecretFile(paths.demoVendorKey, newPem);
  // Synapse reads it from the organisation's secrets folder, on a host and in containers alike.
  if (org.sso)
    await copySecretFile(
      resolve(baseDir, org.sso.client_secret_file),
      paths.oidcClientSecret,
      `organisation ${org.id}: sso.client_secret_file`,
    );
  await ensureSecretFile(paths.bridgeSigningKey, newPem);

  let tls: { certificate: string; privateKey: string };
  if (org.tls) {
    tls = {
      certificate: resolve(baseDir, org.tls.certificate),
      privateKey: resolve(baseDir, org.tls.private_key),
    };
  } else {
    if (!ca) throw new Error("local CA missing"); // generateNetwork creates it whenever an org lacks TLS
    const host = serverName.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
    const isIp = /^[\d.]+$|:/.test(host);
    tls = await ensureServerCertificate(ca, paths.tlsDir, {
      dns: isIp ? ["localhost"] : [host, ...(host === "localhost" ? [] : ["localhost"])],
      ip: ["127.0.0.1", "::1", ...(isIp ? [host] : [])],
    });
  }

  // Configs are written for the processes that read them: on this host (loopback, host paths) or
  // in containers (compose service names, the data folder's mount path).
  const view = runtimeView(deployment, dataDir, org);
  const runtimePaths = Object.fromEntries(
    Object.entries(paths as unknown as Record<string, string>).map(([k, v]) => [k, view.path(v)]),
  ) as unknown as OrganisationPaths;
  const adminByAppservice = org.sso?.password_login === false;
  const escapedServer = serverName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await writeRegistration(paths.policyModuleRegistration, {
    id: "medmesh-policy",
    url: view.url("policy_module", org.ports.policy_module),
    // @medmesh: room admin (badges, retention), never has a device, so never receives room keys.
    // @medmesh-verify: the verification bot, an end-to-end encrypting client in direct chats only.
    // @medmesh-channels: the broadcast channels' publisher, an encrypting client in channels only.
    // Neither is the sender: Synapse refuses /sync to an appservice's sender.
    sender_localpart: "medmesh-appservice",
    users: [
      { exclusive: true, regex: `@medmesh(-appservice|-verify|-channels)?:${escapedServer}` },
      // Department (functional) accounts, each an end-to-end encrypting client (docs/departments.md).
      { exclusive: true, regex: `@medmesh-dept-[a-z0-9-]+:${escapedServer}` },
      // MedMesh's admin account logs in as this appservice where password login is off. Not
      // exclusive: the account is created by shared-secret registration, as an admin.
      ...(adminByAppservice ? [{ exclusive: false, regex: `@medmesh-admin:${escapedServer}` }] : []),
    ],
  });
  await writeRegistration(paths.bridgeRegistration, {
    id: "medmesh-bridge",
    url: view.url("bridge", org.ports.bridge),
    sender_localpart: "medmesh-bridge",
    users: [{ exclusive: true, regex: `@(medmesh-bridge|bridge_.+):${escapedServer}` }],
    // Read receipts in transactions (MSC2409); ghosts' devices created by the appservice (MSC4190).
    extensions: { receive_ephemeral: true, "io.element.msc4190": true },
  });

  const limits = proxyLimits(deployment, org);
  const workers = org.workers
    ? await generateWorkers(org.workers, paths, { ...view, dataDir, container: deployment.container })
    : undefined;
  // 0600: with a Postgres password it holds a secret.
  await writeYaml(
    paths.homeserverYaml,
    withWorkers(
      workers,
      homeserverConfig({
        deployment,
        maxUploadBytes: limits.media_body_bytes,
        org,
        serverName,
        paths: runtimePaths,
        federationCaFiles: caFiles.map(view.path),
        bindAddress: view.synapseBind,
        clientUrl: `http://${hostForUrl(org.bind_address)}:${String(org.ports.client)}`,
        decisionUrl: view.url("policy_module", org.ports.policy_module),
      }),
    ),
    0o600,
  );
  await writeYaml(paths.logConfig, logConfig(runtimePaths.logFile));

  const serviceConfig = (
    name: "policy-module" | "bridge",
    port: number,
    registration: string,
    homeserverUrl: string,
    adminToken: string,
  ) => ({
    homeserver: { server_name: serverName, url: homeserverUrl },
    appservice: { registration_file: view.path(registration) },
    listen: { host: org.bind_address, port },
    // Synapse itself for the org-admin check: the bridge's homeserver URL is the proxy, which
    // does not forward Synapse's admin API.
    admin: {
      token_file: view.path(adminToken),
      matrix_admins: true,
      synapse_url: view.url("synapse", org.ports.synapse_client),
      cache_seconds: 30,
    },
    store:
      org.store.type === "postgres"
        ? {
            type: "postgres" as const,
            url: org.store.url,
            pool_max: 10,
            ...(org.store.password === undefined ? {} : { password: org.store.password }),
          }
        : { type: "pglite" as const, data_dir: view.path(join(paths.storeDir, name)) },
    log_level: "info" as const,
    leader: { lease_seconds: 30 },
  });
  const trustConfig = deployment.trust;
  const policyModule = {
    ...serviceConfig(
      "policy-module",
      org.ports.policy_module,
      paths.policyModuleRegistration,
      view.url("synapse", org.ports.synapse_client),
      paths.policyModuleAdminToken,
    ),
    profile: org.profile,
    synapse_admin: {
      registration_shared_secret: readFileSync(paths.registrationSecret, "utf8").trim(),
      login: adminByAppservice ? ("appservice" as const) : ("password" as const),
      ...(workers?.mediaUrl === undefined ? {} : { media_url: workers.mediaUrl }),
    },
    organisation: { signing_key_file: view.path(paths.organisationKey), ca_files: caFiles.map(view.path) },
    synapse_module: { token_file: view.path(paths.decisionToken) },
    audit: { anchor_file: view.path(paths.auditAnchors), anchor_interval_seconds: 300 },
    trust: {
      open_federation: false,
      operator_keys: [
        ...(trustConfig.sign_locally ? [view.path(trust.operatorPublicKey)] : []),
        ...trustConfig.operator_keys.map((f) => view.path(resolve(baseDir, f))),
      ],
      lists: [
        ...(trustConfig.sign_locally ? [{ file: view.path(trust.signedList) }] : []),
        ...trustConfig.lists.map((l) => ("file" in l ? { file: view.path(resolve(baseDir, l.file)) } : l)),
      ],
      refresh_seconds: trustConfig.refresh_seconds,
      synapse_whitelist_file: view.path(paths.federationWhitelist),
    },
    identity: policyIdentity(deployment, org, (f) => view.path(resolve(baseDir, f))),
    retention: { ...deployment.retention, allow_clock_override: deployment.profile === "test" },
    invites: { unverified_may_invite_verified: false },
    directory: { peer_timeout_ms: 1500, remote_cache_seconds: 300 },
    console: {
      bridge: { url: view.url("bridge", org.ports.bridge), token_file: view.path(paths.bridgeAdminToken) },
    },
    proxy: {
      client: { host: org.bind_address, port: org.ports.client },
      federation: {
        host: org.bind_address,
        port: org.ports.federation,
        upstream: view.url("synapse", org.ports.synapse_federation),
        tls: { certificate: view.path(tls.certificate), private_key: view.path(tls.privateKey) },
      },
      limits,
      rooms: { allow_unencrypted_announcements: false, allow_public_rooms: false },
      single_sign_on: org.sso !== undefined,
      // TI-M's /.well-known/matrix/support: the organisation's admin console.
      ...(org.profile === "medmesh"
        ? {}
        : {
            support_page: `${org.public_baseurl ?? `http://${hostForUrl(org.bind_address)}:${String(org.ports.client)}/`}_medmesh/console`,
          }),
      workers: workers?.routing ?? [],
    },
  };
  const bridge = {
    // The bridge acts in Matrix through the proxy, so ghosts obey the organisation's rules
    // (trust list, invite permissions, encryption, media) like every other user.
    ...serviceConfig(
      "bridge",
      org.ports.bridge,
      paths.bridgeRegistration,
      view.url("policy_module", org.ports.client),
      paths.bridgeAdminToken,
    ),
    interop: InteropConfigSchema.parse({
      listen: { host: org.bind_address, port: org.ports.bridge_interop },
      public_url: view.url("bridge", org.ports.bridge_interop),
      vendors: [
        ...org.bridge_vendors,
        ...(org.demo_vendor
          ? [
              {
                id: org.demo_vendor.id,
                key_id: `${org.demo_vendor.id}-demo`,
                public_key: createPublicKey(readFileSync(paths.demoVendorKey)).export({ format: "jwk" }),
                webhook_url: `http://${hostForUrl(org.bind_address)}:${String(org.demo_vendor.port)}/webhook`,
              },
            ]
          : []),
      ],
      signing_key: { key_id: `medmesh-${org.id}`, private_key_file: view.path(paths.bridgeSigningKey) },
      // The bridge's copies live no longer than the messages: the same period as retention's.
      lifecycle: {
        retention_days: deployment.retention.default_days,
        allow_clock_override: deployment.profile === "test",
      },
    }),
  };
  await writeYaml(paths.policyModuleConfig, policyModule, 0o600);
  await writeYaml(paths.bridgeConfig, bridge, 0o600);

  const host = hostForUrl(org.bind_address);
  return {
    org,
    serverName,
    paths,
    clientUrl: `http://${host}:${String(org.ports.client)}`,
    synapseUrl: `http://127.0.0.1:${String(org.ports.synapse_client)}`,
    federationUrl: `https://${host}:${String(org.ports.federation)}`,
    policyModuleUrl: `http://${host}:${String(org.ports.policy_module)}`,
    bridgeUrl: `http://${host}:${String(org.ports.bridge)}`,
    bridgeInteropUrl: `http://${host}:${String(org.ports.bridge_interop)}`,
    adminTokenFiles: { "policy-module": paths.policyModuleAdminToken, bridge: paths.bridgeAdminToken },
    ...(workers ? { workers: workers.processes } : {}),
    policyModule,
    bridge,
  };
}

/** How the running processes see this deployment: host paths and loopback, or container paths and service names. */
function runtimeView(deployment: DeploymentConfig, dataDir: string, org: OrganisationConfig) {
  const container = deployment.container;
  const localHost = hostForUrl(org.bind_address);
  return {
    synapseBind: container ? "0.0.0.0" : "127.0.0.1",
    path: (p: string): string =>
      container && (p === dataDir || p.startsWith(dataDir + sep))
        ? join(container.data_dir, relative(dataDir, p))
        : p,
    url: (service: "synapse" | "policy_module" | "bridge", port: number): string =>
      `http://${container ? container.hosts[service] : service === "synapse" ? "127.0.0.1" : localHost}:${String(port)}`,
  };
}

async function writeRegistration(
  file: string,
  reg: {
    id: string;
    url: string;
    sender_localpart: string;
    users: { exclusive: boolean; regex: string }[];
    extensions?: Record<string, boolean>;
  },
): Promise<void> {
  // Tokens survive regeneration: Synapse and the running service must keep agreeing on them.
  const previous = existsSync(file) ? (parseYaml(readFileSync(file, "utf8")) as Record<string, unknown>) : {};
  const token = (key: "as_token" | "hs_token"): string =>
    typeof previous[key] === "string" ? previous[key] : randomToken();
  await writeYaml(
    file,
    {
      id: reg.id,
      url: reg.url,
      as_token: token("as_token"),
      hs_token: token("hs_token"),
      sender_localpart: reg.sender_localpart,
      rate_limited: false,
      namespaces: { users: reg.users, rooms: [], aliases: [] },
      ...reg.extensions,
    },
    0o600,
  );
}

async function writeYaml(file: string, value: unknown, mode = 0o644): Promise<void> {
  await writeFile(
    file,
    `# Generated by MedMesh (deploy/src/generate.ts); edits are overwritten.\n${stringify(value)}`,
  );
  await chmod(file, mode); // also tightens a file an older version wrote with a wider mode
}
