import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { renderSample } from "@medmesh/common";
import { PolicyModuleConfigSchema } from "@medmesh/policy-module";
import { BridgeConfigSchema } from "@medmesh/bridge";
import { DeploymentSchema } from "./config/schema.ts";

export interface ConfigKind {
  kind: "deployment" | "policy-module" | "bridge";
  schema: z.ZodType;
  sample: string;
  title: string;
}

/** Every config MedMesh reads, its schema and its committed sample (config/*.sample.yaml). */
export const CONFIG_KINDS: readonly ConfigKind[] = [
  {
    kind: "deployment",
    schema: DeploymentSchema,
    sample: "deployment.sample.yaml",
    title:
      "MedMesh deployment: the organisations whose Synapse + MedMesh services `medmesh generate`/`start` set up.",
  },
  {
    kind: "policy-module",
    schema: PolicyModuleConfigSchema,
    sample: "policy-module.sample.yaml",
    title: "MedMesh policy-module service config (generated per organisation by `medmesh generate`).",
  },
  {
    kind: "bridge",
    schema: BridgeConfigSchema,
    sample: "bridge.sample.yaml",
    title: "MedMesh bridge service config (generated per organisation by `medmesh generate`).",
  },
];

export function renderKind(k: ConfigKind): string {
  return renderSample(k.schema, k.title);
}

/** Samples whose committed text differs from what the schema renders now. */
export function driftedSamples(configDir: string): string[] {
  return CONFIG_KINDS.filter((k) => {
    try {
      return readFileSync(join(configDir, k.sample), "utf8") !== renderKind(k);
    } catch {
      return true; // missing counts as drift
    }
  }).map((k) => k.sample);
}

export function kindForFile(file: string): ConfigKind {
  const base = file.split("/").pop() ?? file;
  return (
    CONFIG_KINDS.find((k) => k.kind !== "deployment" && base.startsWith(k.kind)) ??
    (CONFIG_KINDS[0] as ConfigKind)
  );
}
