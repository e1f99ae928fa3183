import { ServiceConfigSchema } from "@medmesh/common";
import type { z } from "zod";
import { InteropConfigSchema } from "./interop/config.ts";

export const BridgeConfigSchema = ServiceConfigSchema.extend({
  interop: InteropConfigSchema.optional().describe(
    "The open interop API other medical messengers call (omitted: not served).",
  ),
});
export type BridgeConfig = z.output<typeof BridgeConfigSchema>;
