import { z } from "zod";

const SourceSchema = z.union([
  z.object({ file: z.string().min(1).describe("Path of a signed trust list (JWS).") }),
  z.object({
    url: z.url({ protocol: /^https?$/ }).describe("URL the network operator publishes the signed list at."),
  }),
]);

export const TrustConfigSchema = z
  .object({
    operator_keys: z
      .array(z.string().min(1))
      .min(1)
      .describe(
        "Files holding the network operators' public keys (JWK or JWK Set) the lists are signed with.",
      )
      .meta({ examples: [["/etc/medmesh/trust/operator.pub.jwk.json"]] }),
    lists: z
      .array(SourceSchema)
      .min(1)
      .describe(
        "Signed trust lists, one per network this organisation belongs to; their members are combined.",
      )
      .meta({ examples: [[{ url: "https://trust.gp-network.example/medmesh/list.jws" }]] }),
    refresh_seconds: z
      .number()
      .positive()
      .default(300)
      .describe("How often the lists are fetched again; changes apply without a restart."),
    synapse_whitelist_file: z
      .string()
      .optional()
      .describe(
        "Synapse config fragment the policy module keeps federation_domain_whitelist in (a second line " +
          "behind the proxy). Synapse reads it at start-up.",
      ),
  })
  .describe("Closed federation: only organisations on a signed trust list may federate.");
export type TrustConfig = z.output<typeof TrustConfigSchema>;
