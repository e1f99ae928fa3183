import { ServiceConfigSchema } from "@medmesh/common";
import type { z } from "zod";

export const PolicyModuleConfigSchema = ServiceConfigSchema;
export type PolicyModuleConfig = z.output<typeof PolicyModuleConfigSchema>;
