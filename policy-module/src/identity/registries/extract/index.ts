import { z } from "zod";
import { registryPlugin } from "../plugin.ts";
import { normaliseExtractNumber, openRegistryExtract } from "./extract.ts";

const schema = z
  .object({
    file: z.string().describe("CSV or JSON registry extract; re-read when it changes."),
    registry: z
      .string()
      .min(1)
      .optional()
      .describe(
        "The registry the extract holds (e.g. BIG). Set it so that a broken file at start-up leaves " +
          "checks against that registry pending instead of unknown; it must match the file.",
      ),
  })
  .describe("An imported registry extract (closed networks, other countries).");

export const extractPlugin = registryPlugin({
  id: "extract",
  configSchema: schema,
  validateNumber: normaliseExtractNumber,
  // Look-ups are answered from memory: nothing outside is asked.
  defaultRatePerSecond: undefined,
  ratePerSecond: () => undefined,
  registryNames: (c) => (c.registry === undefined ? undefined : [c.registry.toUpperCase()]),
  fileFields: ["file"],
  create: (c, deps) => openRegistryExtract(c, deps.log),
});

export * from "./extract.ts";
