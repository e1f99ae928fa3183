import { z } from "zod";
import { normaliseExtractNumber } from "../extract/extract.ts";
import { registryPlugin } from "../plugin.ts";
import { createMcsdRegistry } from "./registry.ts";

const schema = z
  .object({
    registry: z
      .string()
      .min(1)
      .describe("The registry name clinicians give with their number (e.g. BIG, or a national directory's).")
      .meta({ examples: ["BIG"] }),
    system: z
      .string()
      .min(1)
      .describe("identifier.system of the register's numbers in the feed.")
      .meta({ examples: ["http://fhir.nl/fhir/NamingSystem/big"] }),
    file: z
      .string()
      .optional()
      .describe("The feed as a file (FHIR R4 Bundle, JSON); re-read when it changes."),
    url: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe("The feed at a URL (https; plain http only for a test server)."),
    refresh_seconds: z
      .number()
      .positive()
      .default(3600)
      .describe("A URL feed is fetched again at the first look-up after this long."),
    timeout_ms: z.number().int().positive().default(30_000).describe("How long fetching the feed may take."),
    max_answer_bytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024)
      .describe("Largest feed read; a larger one leaves checks pending."),
  })
  .refine((c) => (c.file === undefined) !== (c.url === undefined), {
    message: "give the feed's file or its url (one of them)",
  })
  .describe(
    "A registry feed in the format of an IHE mCSD export: a FHIR R4 Bundle of Practitioner (and PractitionerRole) resources.",
  );

export const mcsdPlugin = registryPlugin({
  id: "mcsd",
  configSchema: schema,
  validateNumber: normaliseExtractNumber,
  // Look-ups are answered from memory; the feed itself is fetched once per refresh_seconds.
  defaultRatePerSecond: undefined,
  ratePerSecond: () => undefined,
  registryNames: (c) => [c.registry.toUpperCase()],
  fileFields: ["file"],
  create: (c, deps) =>
    createMcsdRegistry({
      registry: c.registry,
      system: c.system,
      source: c.file !== undefined ? { file: c.file } : { url: c.url ?? "" },
      refreshMs: c.refresh_seconds * 1000,
      timeoutMs: c.timeout_ms,
      maxBytes: c.max_answer_bytes,
      log: deps.log,
    }),
});

export { createMcsdRegistry, type McsdRegistryOptions } from "./registry.ts";
export { parseMcsdFeed, McsdFeedError, type McsdFeed } from "./feed.ts";
