import type { z } from "zod";
import type { RegistryPlugin } from "./types.ts";

/** Declares a plug-in, keeping its id and config type for identity.registries' schema. */
export function registryPlugin<const Id extends string, S extends z.ZodType>(
  plugin: RegistryPlugin<Id, S>,
): RegistryPlugin<Id, S> {
  return plugin;
}
