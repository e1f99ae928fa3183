import { z } from "zod";

/** One test driver for one homeserver: where it listens, which homeserver, and its pool of accounts. */
export const TimDriverConfigSchema = z.object({
  listen: z.object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535),
  }),
  homeserver: z.object({
    /** The client API as TI-M clients reach it (MedMesh's policy proxy). */
    client_url: z.url(),
    server_name: z.string().min(1),
  }),
  profile: z.enum(["tim-pro", "tim-epa"]).default("tim-pro"),
  /** The preconfigured accounts, one device each; the API needs at least three. */
  accounts: z
    .array(
      z.object({
        username: z.string().min(1),
        password: z.string().min(1),
        display_name: z.string().min(1),
      }),
    )
    .min(3, { error: "must list at least 3 accounts (one device each)" }),
  max_upload_bytes: z
    .number()
    .int()
    .positive()
    .default(20 * 1024 * 1024),
  /**
   * Where the driver keeps its logged-in devices (login and Rust crypto store) and the accounts'
   * recovery keys, so that a restarted driver goes on with the same devices (docs/tim-driver.md).
   * Without it everything is in memory and a stop logs every device out.
   */
  data_dir: z.string().min(1).optional(),
  log_level: z.enum(["fatal", "error", "warn", "info", "debug", "silent"]).default("info"),
});
export type TimDriverConfig = z.output<typeof TimDriverConfigSchema>;
