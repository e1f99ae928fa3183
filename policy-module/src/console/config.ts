import { z } from "zod";

export const ConsoleConfigSchema = z
  .object({
    bridge: z
      .object({
        url: z
          .url()
          .describe("The bridge's internal listener (its admin API; never the public interop URL)."),
        token_file: z
          .string()
          .min(1)
          .describe("File holding the bridge's admin token (the bridge's own admin.token_file)."),
      })
      .optional()
      .describe(
        "Where the status page reads the bridge's vendors, queues and dead letters; without it the page says no bridge is configured.",
      )
      .meta({
        examples: [{ url: "http://127.0.0.1:8010", token_file: "/etc/medmesh/secrets/bridge-admin-token" }],
      }),
  })
  .describe("The admin console (docs/console.md).");
export type ConsoleConfig = z.infer<typeof ConsoleConfigSchema>;
