import { ServiceConfigSchema } from "@medmesh/common";
import type { z } from "zod";
import { ProxyConfigSchema } from "./proxy/index.ts";

export const PolicyModuleConfigSchema = ServiceConfigSchema.extend({
  proxy: ProxyConfigSchema.optional(),
});
export type PolicyModuleConfig = z.output<typeof PolicyModuleConfigSchema>;
