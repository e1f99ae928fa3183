import { z } from "zod";

const listener = (port: number) =>
  z.object({
    host: z.string().default("127.0.0.1").describe("Bind address."),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .describe("TCP port.")
      .meta({ examples: [port] }),
  });

export const ProxyConfigSchema = z
  .object({
    client: listener(8008).describe("The organisation's client-server API, as clients reach it."),
    federation: listener(8448)
      .extend({
        upstream: z
          .url({ protocol: /^https?$/ })
          .describe("Synapse's federation listener (plain HTTP on loopback).")
          .meta({ examples: ["http://127.0.0.1:18448"] }),
        tls: z
          .object({
            certificate: z.string().describe("PEM certificate chain presented to other homeservers."),
            private_key: z.string().describe("PEM private key."),
          })
          .meta({
            examples: [
              { certificate: "/etc/medmesh/tls/fullchain.pem", private_key: "/etc/medmesh/tls/privkey.pem" },
            ],
          }),
      })
      .describe("The organisation's federation API (TLS), as other homeservers reach it."),
  })
  .describe("The policy proxy in front of Synapse. Client requests go to homeserver.url.");
export type ProxyConfig = z.output<typeof ProxyConfigSchema>;
