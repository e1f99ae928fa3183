import { z } from "zod";
import { StoreConfigSchema } from "../store/config.ts";
import { parseServerName, InvalidIdError } from "../ids.ts";
import { LeaderConfigSchema } from "../service/leader.ts";

/** A Matrix server name (hostname, IPv4 or [IPv6], optional port), validated like parseServerName. */
export const ServerNameSchema = z.string().superRefine((v, ctx) => {
  try {
    parseServerName(v);
  } catch (err) {
    if (err instanceof InvalidIdError) ctx.addIssue({ code: "custom", message: err.message });
    else throw err;
  }
});

/** A TCP listener: bind address and port (0 picks a free one). */
export function listenerSchema(examplePort: number) {
  return z.object({
    host: z.string().default("127.0.0.1").describe("Bind address."),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .describe("TCP port (0 picks a free one).")
      .meta({ examples: [examplePort] }),
  });
}

/**
 * Who may call the internal listener's admin API and /metrics (everything there but /health and
 * the APIs that authenticate themselves, such as the appservice API).
 */
export const AdminConfigSchema = z
  .object({
    token_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        "File holding the admin bearer token (at least 32 characters; `medmesh generate` writes one per service). Read at start: restart after rotating it.",
      )
      .meta({ examples: ["/etc/medmesh/secrets/admin-token"] }),
    matrix_admins: z
      .boolean()
      .default(true)
      .describe(
        "Also accept the Matrix access token of a Synapse server admin of this organisation (checked with Synapse's whoami and admin API).",
      ),
    synapse_url: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe(
        "Synapse's own client listener for that check (default: homeserver.url). Set it when homeserver.url is the policy proxy, which does not forward Synapse's admin API.",
      )
      .meta({ examples: ["http://127.0.0.1:18008"] }),
    cache_seconds: z
      .number()
      .int()
      .min(0)
      .default(30)
      .describe("How long Synapse's answer about a Matrix token is reused."),
  })
  .refine((a) => a.token_file !== undefined || a.matrix_admins, {
    message: "set token_file or matrix_admins: true, or nobody can use the admin API and /metrics",
  })
  .describe("Authentication of the admin API and /metrics on the internal listener (docs/production.md).");
export type AdminConfig = z.output<typeof AdminConfigSchema>;

/**
 * The part every MedMesh service config shares: which homeserver it serves, the appservice
 * registration it authenticates with (the same file Synapse reads, so tokens have one source),
 * where it listens, its store and log level.
 */
export const ServiceConfigSchema = z.object({
  homeserver: z
    .object({
      server_name: ServerNameSchema.describe("Matrix server name of the organisation.").meta({
        examples: ["hospital-a.example"],
      }),
      url: z
        .url({ protocol: /^https?$/ })
        .describe("Synapse client-server API as seen from this service (loopback in a local network).")
        .meta({ examples: ["http://127.0.0.1:8008"] }),
    })
    .describe("The organisation's homeserver."),
  appservice: z
    .object({
      registration_file: z
        .string()
        .min(1)
        .describe("Appservice registration YAML (the file listed in Synapse's app_service_config_files).")
        .meta({ examples: ["/etc/medmesh/appservices/service.yaml"] }),
    })
    .describe("Appservice identity towards Synapse."),
  listen: listenerSchema(9100).describe(
    "Internal HTTP listener: /health (open), /metrics and the admin API (admin only), the appservice API (hs_token).",
  ),
  admin: AdminConfigSchema.prefault({}).meta({
    examples: [
      {
        token_file: "/etc/medmesh/secrets/admin-token",
        matrix_admins: true,
        synapse_url: "http://127.0.0.1:18008",
        cache_seconds: 30,
      },
    ],
  }),
  store: StoreConfigSchema.describe("Database of this service.").meta({
    examples: [
      {
        type: "postgres",
        url: "postgres://medmesh@db:5432/medmesh",
        password: "${file:/run/secrets/db_password}",
      },
    ],
  }),
  log_level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  leader: LeaderConfigSchema.prefault({}),
});
export type ServiceConfig = z.output<typeof ServiceConfigSchema>;
