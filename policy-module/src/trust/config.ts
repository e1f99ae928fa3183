import { z } from "zod";

const SourceSchema = z.union([
  z.object({ file: z.string().min(1).describe("Path of a signed trust list (JWS).") }),
  z.object({
    url: z.url({ protocol: /^https?$/ }).describe("URL the network operator publishes the signed list at."),
  }),
]);

export const TrustConfigSchema = z
  .object({
    open_federation: z
      .boolean()
      .default(false)
      .describe(
        "Federate with any server, without a trust list. Only for a deliberately open deployment: it must be said explicitly, a missing trust section is refused.",
      ),
    operator_keys: z
      .array(z.string().min(1))
      .default([])
      .describe(
        "Files holding the network operators' public keys (JWK or JWK Set) the lists are signed with.",
      )
      .meta({ examples: [["/etc/medmesh/trust/operator.pub.jwk.json"]] }),
    lists: z
      .array(SourceSchema)
      .default([])
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
  .superRefine((t, ctx) => {
    if (t.open_federation && (t.lists.length > 0 || t.operator_keys.length > 0))
      ctx.addIssue({
        code: "custom",
        path: ["open_federation"],
        message:
          "open_federation: true ignores trust lists: remove operator_keys and lists, or open_federation",
      });
    if (!t.open_federation)
      for (const key of ["operator_keys", "lists"] as const)
        if (t[key].length === 0)
          ctx.addIssue({
            code: "custom",
            path: [key],
            message: "needs at least one entry (or open_federation: true to federate with any server)",
          });
  })
  .describe("Closed federation: only organisations on a signed trust list may federate.");
export type TrustConfig = z.output<typeof TrustConfigSchema>;

/**
 * Why a policy module with this trust section must not start, or undefined. Federating with
 * anyone is never the silent result of a forgotten section (fail closed).
 */
export function missingTrustProblem(trust: TrustConfig | undefined): string | undefined {
  return trust
    ? undefined
    : "no trust list configured (trust.operator_keys and trust.lists): the policy module federates only " +
        "with organisations on a signed trust list. To federate with any server, say so explicitly: " +
        "trust: { open_federation: true }";
}
