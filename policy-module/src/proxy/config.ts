import { listenerSchema } from "@medmesh/common";
import { z } from "zod";

const MiB = 1024 * 1024;

export const LimitsSchema = z
  .object({
    json_body_bytes: z
      .number()
      .int()
      .positive()
      .default(MiB)
      .describe("Largest JSON body a client may send to an endpoint the proxy inspects."),
    media_body_bytes: z
      .number()
      .int()
      .positive()
      .default(100 * MiB)
      .describe("Largest image upload the proxy reads to strip metadata (other uploads stream)."),
    federation_body_bytes: z
      .number()
      .int()
      .positive()
      .default(20 * MiB)
      .describe("Largest federation request body the proxy inspects."),
    requests_per_second: z
      .number()
      .positive()
      .default(20)
      .describe("Sustained client requests per user (or per address when unauthenticated)."),
    burst: z.number().int().positive().default(100).describe("Requests a user may make at once."),
  })
  .describe("Request size and rate limits, enforced before Synapse sees a request.");

export const RoomPolicySchema = z
  .object({
    allow_unencrypted_announcements: z
      .boolean()
      .default(false)
      .describe(
        "Allow unencrypted rooms created with creation_content 'org.medmesh.announcement': true " +
          "whose power levels make them read-only (events_default ≥ 50). Every other room is encrypted.",
      ),
    allow_public_rooms: z
      .boolean()
      .default(false)
      .describe(
        "Allow the join rule 'public' (anyone on a trusted server joins without invitation). " +
          "Otherwise people join by invitation or by knocking; enforced at Synapse's decision points.",
      ),
  })
  .describe("Rules for rooms, wherever they are created or changed.");

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
    limits: LimitsSchema.prefault({}),
    rooms: RoomPolicySchema.prefault({}),
  })
  .describe("The policy proxy in front of Synapse. Client requests go to homeserver.url.");
export type ProxyConfig = z.output<typeof ProxyConfigSchema>;
