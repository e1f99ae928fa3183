import { z } from "zod";

const Ed25519PublicJwk = z
  .object({ kty: z.literal("OKP"), crv: z.literal("Ed25519"), x: z.string().min(43) })
  .describe("The vendor's Ed25519 public key as a JWK.");

export const InteropConfigSchema = z
  .object({
    public_url: z
      .url({ protocol: /^https?$/ })
      .describe("The bridge's interop API as vendors address it (signatures cover the exact URI).")
      .meta({ examples: ["https://interop.hospital-a.example"] }),
    vendors: z
      .array(
        z.object({
          id: z.string().min(1).describe("The vendor's name in logs, metrics and the audit log."),
          key_id: z.string().min(1).describe("The keyid its signatures carry."),
          public_key: Ed25519PublicJwk,
          webhook_url: z
            .url({ protocol: /^https?$/ })
            .describe("Where MedMesh delivers events to the vendor."),
        }),
      )
      .default([])
      .meta({
        examples: [
          [
            {
              id: "example-messenger",
              key_id: "example-messenger-2026",
              public_key: { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
              webhook_url: "https://medmesh-webhook.vendor.example/v1/events",
            },
          ],
        ],
      }),
    max_body_bytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024)
      .describe("Largest accepted request body."),
    max_skew_seconds: z
      .number()
      .int()
      .positive()
      .default(300)
      .describe("How far a signature's created time may be from now (and how long nonces are kept)."),
  })
  .refine((c) => new Set(c.vendors.map((v) => v.key_id)).size === c.vendors.length, {
    message: "each vendor needs its own key_id",
  })
  .describe("The open interop API other medical messengers call (docs/interop-api.md).");
export type InteropConfig = z.output<typeof InteropConfigSchema>;
