import { readFileSync } from "node:fs";
import {
  createSynapseAdmin,
  startAppserviceService,
  type RunningService,
  type StartOptions,
  type StartedRole,
} from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Store } from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";
import { createDirectory, createPeerClient } from "./directory/index.ts";
import { configuredClinicians } from "./identity/verification.ts";
import { createInviteGate } from "./invites/index.ts";
import { startProxy } from "./proxy/index.ts";
import { createTrustManager, loadOrgKey, type TrustManager } from "./trust/index.ts";

export interface PolicyModuleStartOptions extends StartOptions {
  /** Called after the trust list changed Synapse's federation whitelist fragment (the runner restarts Synapse). */
  onSynapseWhitelistChanged?: () => Promise<void>;
}

/**
 * policy-module: the proxy role (when configured: the enforcement point every client and federation
 * request passes, with trust list, directory and invite permissions), the appservice role (store,
 * transactions, health, metrics, the homeserver link) and, later, the API role.
 */
export async function start(
  config: PolicyModuleConfig,
  opts: PolicyModuleStartOptions = {},
): Promise<RunningService> {
  let trust: TrustManager | undefined;
  return startAppserviceService(
    {
      name: "policy-module",
      onEvents: () => Promise.resolve(),
      mount: (app) => {
        // Internal listener: which lists are in force, for operators and tests.
        app.get("/_medmesh/admin/v1/trust", (_req, res) => {
          res.json(trust ? trust.status() : { configured: false });
        });
      },
      healthChecks: {
        trust_list: () =>
          Promise.resolve().then(() => {
            if (trust && trust.status().networks.length === 0)
              throw new Error("no valid trust list in force");
          }),
      },
      roles: config.proxy
        ? [
            async (ctx) => {
              trust = config.trust
                ? await createTrustManager(config.trust, {
                    serverName: config.homeserver.server_name,
                    log: ctx.log,
                    metrics: ctx.metrics,
                    documents: ctx.store.documents,
                    ...(opts.onSynapseWhitelistChanged
                      ? { onWhitelistChanged: opts.onSynapseWhitelistChanged }
                      : {}),
                  })
                : undefined;
              if (!trust)
                ctx.log.warn("no trust list configured: this organisation federates with any server");
              return startProxyRole(config, ctx, trust);
            },
          ]
        : [],
    },
    config,
    opts,
  );
}

async function startProxyRole(
  config: PolicyModuleConfig,
  ctx: { log: Logger; metrics: Registry; store: Store },
  trust: TrustManager | undefined,
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
  const directory = createDirectory({
    serverName,
    config: config.directory,
    clinicians: configuredClinicians(config.identity),
    trust: {
      servers: () => trustView.status().servers,
      attestationKeys: (s) => trustView.attestationKeys(s),
    },
    peers: createPeerClient({
      serverName,
      orgKey: org ? loadOrgKey(org.signing_key_file) : undefined,
      ca: org?.ca_files.length ? org.ca_files.map((f) => readFileSync(f)) : undefined,
    }),
    log: ctx.log,
    metrics: ctx.metrics,
  });
  const invites = createInviteGate({
    admin: createSynapseAdmin({
      url: config.homeserver.url,
      registrationSharedSecret: adminConfig.registration_shared_secret,
    }),
    policy: config.invites,
    verification: directory,
    log: ctx.log,
  });
  const running = await startProxy(proxy, new URL(config.homeserver.url), {
    log: ctx.log,
    metrics: ctx.metrics,
    serverName,
    trust: trustView,
    invites,
    directory,
    medmesh: (c, origin) => directory.serveFhir(c, origin),
  });
  return {
    endpoints: { client: running.clientUrl, federation: running.federationUrl },
    stop: async () => {
      trust?.stop();
      await running.stop();
    },
  };
}
