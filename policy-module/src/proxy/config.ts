import { listenerSchema } from "@medmesh/common";
import { z } from "zod";

export const ProxyConfigSchema = z
  .object({
    client: listenerSchema(8008).describe("The organisation's client-server API, as clients reach it."),
    federation: listenerSchema(8448)
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
