import { ServiceConfigSchema } from "@medmesh/common";
import type { z } from "zod";

export const BridgeConfigSchema = ServiceConfigSchema;
export type BridgeConfig = z.output<typeof BridgeConfigSchema>;
