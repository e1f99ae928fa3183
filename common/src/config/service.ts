import { z } from "zod";
import { StoreConfigSchema } from "../store/config.ts";
import { parseServerName, InvalidIdError } from "../ids.ts";

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
  listen: listenerSchema(9100).describe("HTTP listener: /health, /metrics and the service's APIs."),
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
});
export type ServiceConfig = z.output<typeof ServiceConfigSchema>;
