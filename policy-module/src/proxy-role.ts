import { readFileSync } from "node:fs";
import { ApiError, createSynapseAdmin, ensureAppserviceUser, type StartedRole } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Registration, Store } from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";
import type { Verification } from "./identity/verification.ts";
import type { InviteGate } from "./proxy/policy.ts";
import { createDirectory, createPeerClient, FHIR_PATH } from "./directory/index.ts";
import {
  departmentConsoleRoutes,
  isDepartmentAccount,
  startDepartments,
  type Departments,
} from "./departments/index.ts";
import { groupConsoleRoutes, isRoomAdminBot, startGroups, type Groups } from "./groups/index.ts";
import { channelBotOf, startChannels, type Channels } from "./channels/index.ts";
import { startIdentity, type Identity } from "./identity/service.ts";
import { createBotHost, type BotHost } from "./bot/index.ts";
import type { replicaRoles } from "./replicas.ts";
import { identityDocuments } from "./identity/records.ts";
import { createConsole } from "./console/index.ts";
import { createPeerApi } from "./peer-api.ts";
import type { AuditService } from "./audit/index.ts";
import { insuredPerson, isTim } from "./rooms/profile.ts";
import { createTimMirror, type TimMirror } from "./rooms/tim-mirror.ts";
import { createDecider, type Decider } from "./decisions/index.ts";
import { createInviteGate } from "./invites/index.ts";
import { startProxy } from "./proxy/index.ts";
import { startRetention, SWEEP_JOB, type Retention } from "./retention/index.ts";
import { loadOrgKey, type TrustManager } from "./trust/index.ts";

/**
 * The proxy role: trust, identity, retention, directory, groups, channels, departments, the console
 * and the policy proxy in front of Synapse, wired together (start.ts defines the service around it).
 */
export async function startProxyRole(
  config: PolicyModuleConfig,
  ctx: { log: Logger; metrics: Registry; store: Store; registration: Registration },
  { leadership, botCalls }: ReturnType<typeof replicaRoles>,
  trust: TrustManager | undefined,
  audit: () => AuditService | undefined,
  onDecider: (decider: Decider) => void,
  onStarted: (
    identity: Identity,
    retention: Retention,
    groups: Groups,
    channels: Channels,
    departments: Departments,
    bots: BotHost,
    tim?: TimMirror,
  ) => void,
): Promise<StartedRole> {
  const proxy = config.proxy;
  const adminConfig = config.synapse_admin;
  if (!proxy || !adminConfig) throw new Error("proxy role started without its configuration");
  const serverName = config.homeserver.server_name;
  const trustView = trust ?? {
    isTrusted: () => true,
    attestationKeys: () => [],
    status: () => ({ servers: [], networks: [], sources: [] }),
  };
  const org = config.organisation;
  const orgKey = org ? loadOrgKey(org.signing_key_file) : undefined;
  const peers = createPeerClient({
    serverName,
    orgKey,
    ca: org?.ca_files.length ? org.ca_files.map((f) => readFileSync(f)) : undefined,
  });
  const admin = createSynapseAdmin({
    url: config.homeserver.url,
    registrationSharedSecret: adminConfig.registration_shared_secret,
    // Appservice login: works where the organisation switched password login off (SSO only).
    ...(adminConfig.login === "appservice" ? { appserviceToken: ctx.registration.as_token } : {}),
    ...(adminConfig.media_url === undefined ? {} : { mediaUrl: adminConfig.media_url }),
  });
  const botUserId = `@medmesh:${serverName}`;
  // Synapse asks from the moment the bots start (they join rooms they were invited to while this
  // service was down); invite and directory decisions wait for identity, the others need nothing.
  const late: {
    invites?: InviteGate;
    verification?: Verification;
    identity?: Identity;
    groups?: Groups;
    departments?: Departments;
    reviewers?: () => Promise<string[]>;
  } = {};
  const notYet = (): never => {
    throw new ApiError("M_UNAVAILABLE", "the policy module is still starting");
  };
  const insured = (id: string): boolean =>
    insuredPerson(id, { serverName, profile: config.profile }, (s) =>
      trust?.insuredPersons(s) ? "tim-epa" : undefined,
    );
  onDecider(
    createDecider({
      serverName,
      profile: config.profile,
      insured,
      trust: trustView,
      invites: {
        check: (inviter, invitee) => (late.invites ?? notYet()).check(inviter, invitee),
        changed: (userId) => late.invites?.changed(userId),
      },
      verification: { isVerified: (userId) => (late.verification ?? notYet()).isVerified(userId) },
      rooms: proxy.rooms,
      groups: { membership: (q) => (late.groups ?? notYet()).rules.membership(q) },
      accounts: { deactivated: (u, byAdmin) => (late.identity ?? notYet()).verifier.deactivated(u, byAdmin) },
      // Asked while Synapse completes an SSO login; identity starts before the proxy listens.
      ...(config.identity.sso
        ? {
            sso: {
              claims: (q) => ((late.identity ?? notYet()).sso ?? notYet()).claims(q),
              login: (q) => ((late.identity ?? notYet()).sso ?? notYet()).login(q),
            },
          }
        : {}),
    }),
  );
  await ensureAppserviceUser(config.homeserver.url, ctx.registration.as_token, "medmesh");
  const verifyBotUserId = `@medmesh-verify:${serverName}`;
  const bots = createBotHost({
    calls: botCalls,
    store: ctx.store,
    isBot: (u) =>
      u === verifyBotUserId || u === channelBotOf(serverName) || isDepartmentAccount(u, serverName),
    homeserverUrl: config.homeserver.url,
    asToken: ctx.registration.as_token,
    log: ctx.log,
  });
  const identity = await startIdentity(config.identity, {
    leadership,
    bots,
    homeserverUrl: config.homeserver.url,
    asToken: ctx.registration.as_token,
    botUserId,
    verifyBotUserId,
    admin,
    serverName,
    store: ctx.store,
    log: ctx.log,
    metrics: ctx.metrics,
    orgKey,
    orgPublicJwk: org
      ? (JSON.parse(readFileSync(org.signing_key_file, "utf8")) as Record<string, unknown>)
      : undefined,
    peers,
    trust: {
      isTrusted: (s) => trustView.isTrusted(s),
      attestationKeys: (s) => trustView.attestationKeys(s),
      servers: () => trustView.status().servers,
    },
    peerTimeoutMs: config.directory.peer_timeout_ms,
    // The console starts after identity; until then Synapse's server admins are told.
    reviewers: () => late.reviewers?.() ?? Promise.resolve(undefined),
    verificationChanged: (u, rooms) => late.groups?.recheck(u, rooms) ?? Promise.resolve(),
  });
  late.identity = identity;
  const retention = startRetention(config.retention, {
    knex: ctx.store.knex,
    leader: leadership.job(SWEEP_JOB),
    documents: ctx.store.documents,
    homeserverUrl: config.homeserver.url,
    asToken: ctx.registration.as_token,
    botUserId,
    admin,
    serverName,
    log: ctx.log,
    metrics: ctx.metrics,
  });
  const directory = createDirectory({
    serverName,
    config: config.directory,
    clinicians: identity.clinicians,
    remote: identity.remote,
    trust: {
      servers: () => trustView.status().servers,
      attestationKeys: (s) => trustView.attestationKeys(s),
    },
    peers,
    log: ctx.log,
    metrics: ctx.metrics,
    departments: () => late.departments?.entries() ?? [],
  });
  late.verification = directory;
  const groups = (late.groups = startGroups({
    serverName,
    knex: ctx.store.knex,
    homeserverUrl: config.homeserver.url,
    asToken: ctx.registration.as_token,
    botUserId,
    admin,
    // Own clinicians from their records; others from their organisation's attestation, which a
    // revocation notice voids at once (the directory's search cache would keep them for minutes).
    professionOf: async (userId) =>
      userId.endsWith(`:${serverName}`)
        ? (await identity.clinicians.isVerified(userId))
          ? identity.clinicians.get(userId)?.profession
          : undefined
        : (await identity.remote.attestation(userId))?.profession,
    peers,
    peerServers: () => trustView.status().servers,
    peerTimeoutMs: config.directory.peer_timeout_ms,
    log: ctx.log,
  }));
  const channels = await startChannels({
    ...{ serverName, store: ctx.store, admin, peers, log: ctx.log, metrics: ctx.metrics },
    ...{ homeserverUrl: config.homeserver.url, asToken: ctx.registration.as_token },
    ...{ clinicians: identity.clinicians, roomAdminBotUserId: botUserId, bots },
    peerServers: () => trustView.status().servers,
    peerTimeoutMs: config.directory.peer_timeout_ms,
  });
  const asToken = ctx.registration.as_token;
  const mirror = { homeserverUrl: config.homeserver.url, asToken, botUserId, log: ctx.log };
  const adminConsole = await createConsole({
    serverName,
    store: ctx.store,
    admin,
    verifier: () => identity.verifier,
    documents: identityDocuments(ctx.store.knex),
    audit,
    trust: () => trust?.status(),
    retentionPolicy: {
      enabled: config.retention.enabled,
      default_days: config.retention.default_days,
      min_days: config.retention.min_days,
    },
    retentionIndex: () => retention.index.status(),
    serviceAccounts: [
      botUserId,
      `@medmesh-verify:${serverName}`,
      `@medmesh-admin:${serverName}`,
      channelBotOf(serverName),
    ],
    channels: () => channels.service,
    probePeer: (server) =>
      peers.getJson(server, "/_medmesh/identity/v1/jwks", config.directory.peer_timeout_ms),
    bridge: config.console.bridge,
  });
  late.reviewers = adminConsole.reviewers;
  const invites = (late.invites = createInviteGate({
    admin,
    policy: config.invites,
    // A trusted organisation's channel bot invites for its channels as a verified clinician would;
    // department accounts invite their members on duty: the organisation's own count as verified.
    verification: {
      isVerified: async (u) =>
        isDepartmentAccount(u, serverName) ||
        (u === channelBotOf(u.slice(u.indexOf(":") + 1)) && trustView.isTrusted(u.slice(u.indexOf(":") + 1)))
          ? true
          : directory.isVerified(u),
    },
    log: ctx.log,
    isInsuredPerson: insured,
    vouchedInviter: (u) => isRoomAdminBot(u, serverName, (s) => trustView.isTrusted(s)),
  }));
  const departments = (late.departments = await startDepartments({
    ...ctx,
    knex: ctx.store.knex,
    notifications: ctx.store.notifications,
    serverName,
    homeserverUrl: config.homeserver.url,
    asToken: ctx.registration.as_token,
    admin,
    botUserId,
    bots,
  }));
  onStarted(
    identity,
    retention,
    groups,
    channels,
    departments,
    bots,
    isTim(config.profile) ? createTimMirror(mirror) : undefined,
  );
  const running = await startProxy(proxy, new URL(config.homeserver.url), {
    log: ctx.log,
    metrics: ctx.metrics,
    serverName,
    trust: trustView,
    invites,
    directory,
    profile: config.profile,
    insured,
    medmesh: createPeerApi({
      serverName,
      attestationKeys: (s) => trustView.attestationKeys(s),
      routes: [
        { pattern: new RegExp(`^${FHIR_PATH}$`), handle: (c) => directory.serveFhir(c) },
        ...identity.peerRoutes,
        ...groups.peerRoutes,
        ...channels.peerRoutes,
        ...departments.peerRoutes,
      ],
    }),
    medmeshClientRoutes: [
      ...identity.clientRoutes,
      ...groups.clientRoutes,
      ...departmentConsoleRoutes(adminConsole.api, () => late.departments),
      ...groupConsoleRoutes(adminConsole.api, groups.moderation),
      ...adminConsole.routes,
    ],
    membership: (q) => groups.rules.membership(q),
    botUserId,
  });
  identity.reverifier.start();
  retention.start();
  await bots.start();
  await leadership.start();
  return {
    endpoints: { client: running.clientUrl, federation: running.federationUrl },
    stop: async () => {
      trust?.stop();
      await leadership.stop(); // the bots stop with their lease
      bots.stop();
      await identity.reverifier.stop();
      await retention.stop();
      await channels.stop();
      departments.stop();
      await identity.stop();
      await running.stop();
    },
  };
}
