import { listenerSchema } from "@medmesh/common";
import { z } from "zod";

const Ed25519PublicJwk = z
  .object({ kty: z.literal("OKP"), crv: z.literal("Ed25519"), x: z.string().min(43) })
  .describe("The vendor's Ed25519 public key as a JWK.");

export const InteropVendorSchema = z.object({
  id: z
    .string()
    .regex(/^[a-z0-9-]{1,32}$/, "lower-case letters, digits and '-'")
    .describe("The vendor's name in logs, metrics, ghost user IDs (@bridge_<id>_…) and the audit log."),
  key_id: z.string().min(1).describe("The keyid its signatures carry."),
  public_key: Ed25519PublicJwk,
  webhook_url: z.url({ protocol: /^https?$/ }).describe("Where MedMesh delivers events to the vendor."),
  avatar_origins: z
    .array(z.url({ protocol: /^https?$/ }))
    .default([])
    .describe(
      "Origins the bridge fetches the vendor's users' avatar_url from (none: avatars are not taken over).",
    )
    .meta({ examples: [["https://avatars.vendor.example"]] }),
});

export const InteropConfigSchema = z
  .object({
    listen: listenerSchema(9210).describe(
      "Public listener: the interop API only (no health, metrics or admin API; those are on the internal `listen`).",
    ),
    public_url: z
      .url({ protocol: /^https?$/ })
      .describe("The bridge's interop API as vendors address it (signatures cover the exact URI).")
      .meta({ examples: ["https://interop.hospital-a.example"] }),
    vendors: z
      .array(InteropVendorSchema)
      .default([])
      .meta({
        examples: [
          [
            {
              id: "example-messenger",
              key_id: "example-messenger-2026",
              public_key: { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
              webhook_url: "https://medmesh-webhook.vendor.example/v1/events",
              avatar_origins: ["https://avatars.vendor.example"],
            },
          ],
        ],
      }),
    signing_key: z
      .object({
        key_id: z.string().min(1).describe("The keyid MedMesh's webhook signatures carry."),
        private_key_file: z.string().min(1).describe("MedMesh's Ed25519 private key (PKCS#8 PEM)."),
      })
      .describe("How MedMesh signs its deliveries to vendors' webhooks; vendors configure the public key.")
      .meta({
        examples: [
          { key_id: "medmesh-hospital-a", private_key_file: "/etc/medmesh/secrets/bridge-signing.pem" },
        ],
      }),
    delivery: z
      .object({
        max_attempts: z
          .number()
          .int()
          .positive()
          .default(15)
          .describe("Attempts before an event is dead-lettered."),
        initial_backoff_ms: z.number().int().positive().default(500),
        max_backoff_ms: z.number().int().positive().default(60_000),
        timeout_ms: z.number().int().positive().default(10_000).describe("Per webhook request."),
        concurrency: z.number().int().positive().default(8).describe("Conversations delivered in parallel."),
      })
      .prefault({})
      .describe(
        "Deliveries to vendors (and into Matrix): retries with exponential backoff, then dead letter.",
      ),
    lifecycle: z
      .object({
        retention_days: z
          .number()
          .positive()
          .default(30)
          .describe(
            "The organisation's retention period (generated from the deployment's retention.default_days): events the bridge could not carry keep their content at most this long, and files and delivery records go after it.",
          ),
        idempotency_days: z
          .number()
          .positive()
          .default(7)
          .describe(
            "How long a vendor's Idempotency-Key is remembered: its retry window (a retry after it is a new request).",
          ),
        prune_interval_seconds: z
          .number()
          .int()
          .positive()
          .default(600)
          .describe("How often the bridge deletes what it no longer needs (one instance at a time)."),
        allow_clock_override: z
          .boolean()
          .default(false)
          .describe("Tests only: the prune endpoint accepts a `now`. Never in production."),
      })
      .prefault({})
      .describe(
        "What the bridge keeps and for how long: content only until delivered (docs/bridge.md, What the bridge keeps).",
      ),
    encrypt_portals: z
      .boolean()
      .default(true)
      .describe("Portal rooms the bridge creates are end-to-end encrypted (the bridge holds the devices)."),
    max_media_bytes: z
      .number()
      .int()
      .positive()
      .default(20 * 1024 * 1024)
      .describe("Largest file a vendor may upload."),
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
