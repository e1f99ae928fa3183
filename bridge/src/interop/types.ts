import { z } from "zod";

/** The interop API's event envelope (docs/interop-api.md, bridge/openapi/interop-v1.yaml). */
const Id = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9._~:@!$&'()*+,;=-]+$/, "letters, digits and URL-safe punctuation");
const Text = z
  .string()
  .min(1)
  .max(64 * 1024);

export const Registration = z.object({
  registry: z.string().min(1).max(32).describe("BIG, RIZIV, or an extract registry"),
  number: z.string().min(1).max(64),
});

export const User = z.object({
  id: Id,
  display_name: z.string().min(1).max(255),
  avatar_url: z.url().optional(),
  registration: Registration.optional(),
});

export const InteropEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("conversation.create"),
    conversation_id: Id,
    kind: z.enum(["direct", "group"]),
    name: z.string().max(255).optional(),
    creator: Id,
    members: z.array(z.string().min(1)).min(1).max(1000).describe("Vendor user IDs or Matrix user IDs"),
    users: z.array(User).max(1000).optional().describe("Profiles of the vendor's users named here"),
  }),
  z.object({
    type: z.literal("membership"),
    conversation_id: Id,
    user_id: z.string().min(1),
    membership: z.enum(["invite", "join", "leave"]),
    users: z.array(User).max(1000).optional(),
  }),
  z.object({
    type: z.literal("message"),
    conversation_id: Id,
    message_id: Id,
    sender: Id,
    text: Text,
    html: Text.optional().describe(
      "A small HTML subset: b, i, u, code, pre, a, ul, ol, li, br, p, blockquote",
    ),
    reply_to: Id.optional(),
    file: z
      .object({
        media_id: Id,
        name: z.string().min(1).max(255),
        content_type: z.string().min(1),
        size: z.number().int().positive(),
      })
      .optional(),
  }),
  z.object({
    type: z.literal("edit"),
    conversation_id: Id,
    message_id: Id,
    sender: Id,
    text: Text,
    html: Text.optional(),
  }),
  z.object({
    type: z.literal("delete"),
    conversation_id: Id,
    message_id: Id,
    sender: Id,
    reason: z
      .enum(["retention"])
      .optional()
      .describe("retention: the organisation's retention period ended; delete your copy too"),
  }),
  z.object({
    type: z.literal("reaction"),
    conversation_id: Id,
    message_id: Id,
    sender: Id,
    reaction_id: Id,
    key: z.string().min(1).max(64),
  }),
  z.object({
    type: z.literal("receipt"),
    conversation_id: Id,
    message_id: Id,
    user_id: Id,
    receipt: z.enum(["delivered", "read"]),
  }),
]);
export type InteropEvent = z.output<typeof InteropEvent>;

/**
 * MedMesh → vendor only: an event the vendor sent (accepted with 202) that could not be carried
 * into Matrix — refused there (the words say why) or still failing after the last retry.
 */
export const Undelivered = z.object({
  type: z.literal("undelivered"),
  conversation_id: Id,
  event_seq: z.number().int().positive().describe("The event_seq of the bridge's 202 answer"),
  idempotency_key: z.string().min(1).max(255).describe("The Idempotency-Key the vendor sent it with"),
  reason: z.string().min(1).max(2000),
});

/** What MedMesh POSTs to a vendor's webhook. */
export const WebhookEvent = z.discriminatedUnion("type", [...InteropEvent.options, Undelivered]);
export type WebhookEvent = z.output<typeof WebhookEvent>;

export type User = z.output<typeof User>;
