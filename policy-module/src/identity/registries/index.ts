import { z } from "zod";
import { bigPlugin } from "./big/index.ts";
import { extractPlugin } from "./extract/index.ts";
import { mcsdPlugin } from "./mcsd/index.ts";
import { limitRate } from "./rate-limit.ts";
import { rizivPlugin } from "./riziv/index.ts";
import type { RegistryAdapter, RegistryPlugin, RegistryPluginDeps } from "./types.ts";

/**
 * The registries MedMesh can verify against: one folder each. A new country is a folder with an
 * index.ts exporting a RegistryPlugin, and one line here (docs/identity.md).
 */
export const REGISTRY_PLUGINS = [bigPlugin, rizivPlugin, extractPlugin, mcsdPlugin] as const;

type Plugins = (typeof REGISTRY_PLUGINS)[number];
type Shape = { [P in Plugins as P["id"]]: z.ZodOptional<P["configSchema"]> };

/** identity.registries: one optional section per plug-in, each validated by the plug-in's own schema. */
export const RegistriesConfigSchema = z
  .object(Object.fromEntries(REGISTRY_PLUGINS.map((p) => [p.id, p.configSchema.optional()])) as Shape)
  .prefault({})
  .describe("The registries this organisation verifies clinicians against.");
export type RegistriesConfig = z.output<typeof RegistriesConfigSchema>;

const plugins: readonly RegistryPlugin[] = REGISTRY_PLUGINS;

/** The configured plug-ins with their config sections, in the list's order. */
export function configuredPlugins(config: RegistriesConfig): { plugin: RegistryPlugin; config: unknown }[] {
  const sections = config as Readonly<Record<string, unknown>>;
  return plugins
    .filter((p) => sections[p.id] !== undefined)
    .map((p) => ({ plugin: p, config: sections[p.id] }));
}

/**
 * The adapters of the configured registries, keyed by registry name (upper case), each spaced to
 * its rate limit. A plug-in that cannot make its adapter logs why and is left out; it never stops
 * the service.
 */
export function createRegistries(
  config: RegistriesConfig,
  deps: RegistryPluginDeps,
): Map<string, RegistryAdapter> {
  const registries = new Map<string, RegistryAdapter>();
  for (const { plugin, config: section } of configuredPlugins(config)) {
    const adapter = plugin.create(section, deps);
    if (!adapter) continue;
    const rate = plugin.ratePerSecond(section);
    registries.set(adapter.registry.toUpperCase(), rate === undefined ? adapter : limitRate(adapter, rate));
  }
  return registries;
}

/**
 * Which configured plug-in answers for a registry name (for config checks before start):
 * "unknown" when a configured plug-in can only tell from its data (an extract without its
 * registry named), undefined when none can.
 */
export function pluginFor(
  config: RegistriesConfig,
  registry: string,
): { plugin: RegistryPlugin } | "unknown" | undefined {
  const name = registry.toUpperCase();
  let unknown = false;
  for (const { plugin, config: section } of configuredPlugins(config)) {
    const names = plugin.registryNames(section);
    if (names === undefined) unknown = true;
    else if (names.includes(name)) return { plugin };
  }
  return unknown ? "unknown" : undefined;
}

export type { RegistryAdapter, RegistryPlugin, RegistryPluginDeps } from "./types.ts";
