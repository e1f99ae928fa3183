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
      .default(50 * MiB) // Synapse's own default max_upload_size
      .describe(
        "Largest upload, and the hard cap on any client request body (larger ones get 413 at once). " +
          "Synapse's max_upload_size is generated from it. Image uploads are spooled to a temporary " +
          "file to strip their metadata, never held whole in memory.",
      ),
    federation_body_bytes: z
      .number()
      .int()
      .positive()
      .default(20 * MiB)
      .describe("Largest federation request body, inspected or streamed (larger ones get 413 at once)."),
    requests_per_second: z
      .number()
      .positive()
      .default(20)
      .describe("Sustained client requests per user (or per address when unauthenticated)."),
    burst: z.number().int().positive().default(100).describe("Requests a user may make at once."),
    headers_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(30_000)
      .describe("Time a client (or peer server) has to send a request's headers; slower senders get 408."),
    body_idle_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(60_000)
      .describe(
        "Longest pause allowed while a request body arrives; a stalled body gets 408. An idle " +
          "timeout, not a total cap: a long upload that keeps moving is never cut off, and " +
          "responses (long-polling /sync) are not affected.",
      ),
  })
  .describe("Request size and rate limits, enforced before Synapse sees a request.");

/** The same field without its default, for a deployment that overrides only some limits. */
const overridable = <T extends z.ZodType>(field: z.ZodDefault<T>) =>
  field
    .unwrap()
    .optional()
    .describe(field.description ?? "");
const limit = LimitsSchema.shape;

export const LimitsOverrideSchema = z
  .object({
    json_body_bytes: overridable(limit.json_body_bytes),
    media_body_bytes: overridable(limit.media_body_bytes),
    federation_body_bytes: overridable(limit.federation_body_bytes),
    requests_per_second: overridable(limit.requests_per_second),
    burst: overridable(limit.burst),
    headers_timeout_ms: overridable(limit.headers_timeout_ms),
    body_idle_timeout_ms: overridable(limit.body_idle_timeout_ms),
  })
  .describe("Some of the proxy's limits, overriding the deployment's defaults for them.");

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

export const WorkerRoutingSchema = z
  .array(
    z.object({
      name: z.string().describe("The route's list in Synapse's workers documentation."),
      listener: z.enum(["client", "federation"]),
      methods: z.array(z.string()).optional().describe("Only these methods (absent: every method)."),
      pattern: z
        .string()
        .refine((p) => {
          try {
            new RegExp(p);
            return true;
          } catch {
            return false;
          }
        }, "must be a valid regular expression")
        .describe("Regular expression on the raw request path."),
      upstreams: z.array(z.url({ protocol: /^https?$/ })).min(1),
      balance: z.enum(["round_robin", "user", "room", "origin"]),
    }),
  )
  .default([]);
export type WorkerRouting = z.output<typeof WorkerRoutingSchema>;

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
    support_page: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe(
        "Where the organisation's people find help; served as /.well-known/matrix/support with a " +
          "TI-Messenger profile (docs/tim-profile.md).",
      ),
    workers: WorkerRoutingSchema.describe(
      "Where requests go when Synapse runs with workers: the first route whose pattern (and method) " +
        "matches picks one of its upstreams; anything else goes to the main process. Generated by " +
        "the deploy tool from policy-module/src/proxy/worker-routes.ts and the organisation's workers.",
    ),
    single_sign_on: z
      .boolean()
      .default(false)
      .describe(
        "Let through the endpoints of Synapse's single sign-on (the OIDC redirect, callback and " +
          "username pages). The generator sets it exactly when the organisation has `sso`.",
      ),
  })
  .describe("The policy proxy in front of Synapse. Client requests go to homeserver.url.");
export type ProxyConfig = z.output<typeof ProxyConfigSchema>;
