import { createLogger } from "@medmesh/common";
import { describe, expect, it } from "vitest";
import { IdentityConfigSchema } from "../verification.ts";
import {
  configuredPlugins,
  createRegistries,
  pluginFor,
  REGISTRY_PLUGINS,
  RegistriesConfigSchema,
} from "./index.ts";
import { limitRate } from "./rate-limit.ts";
import type { RegistryAdapter } from "./types.ts";

const silent = createLogger("test", "silent");

describe("registry plug-ins", () => {
  it("lists one plug-in per folder, each with its number check and documented default rate", () => {
    expect(REGISTRY_PLUGINS.map((p) => p.id)).toEqual(["big", "riziv", "extract", "mcsd"]);
    expect(REGISTRY_PLUGINS.map((p) => p.defaultRatePerSecond)).toEqual([10, 50, undefined, undefined]);
    const big = REGISTRY_PLUGINS[0];
    expect(big.validateNumber("190 1234 5601")).toEqual({ ok: true, normalised: "19012345601" });
    expect(REGISTRY_PLUGINS[1].validateNumber("1-08290-59-000").ok).toBe(true);
    expect(REGISTRY_PLUGINS[1].validateNumber("1-08290-00-000").ok).toBe(false);
  });

  it("validates identity.registries with each plug-in's own schema", () => {
    const parsed = RegistriesConfigSchema.parse({ big: { url: "https://big.example/soap" } });
    expect(parsed.big).toEqual({
      url: "https://big.example/soap",
      timeout_ms: 5000,
      max_answer_bytes: 1024 * 1024,
      rate_per_second: 10,
    });
    expect(() => RegistriesConfigSchema.parse({ big: { url: "ftp://x" } })).toThrow();
    expect(() =>
      RegistriesConfigSchema.parse({
        mcsd: { registry: "BIG", system: "urn:x", file: "a", url: "https://b" },
      }),
    ).toThrow(/file or its url/);
    // An unknown registry section is not silently accepted as a plug-in.
    expect(RegistriesConfigSchema.parse({ nope: { url: "x" } })).not.toHaveProperty("nope");
    expect(IdentityConfigSchema.parse({}).require_id_document).toBe(true);
    expect(IdentityConfigSchema.parse({}).duplicate_number).toBe("refuse");
  });

  it("builds the configured adapters keyed by registry name, and says which plug-in serves a name", () => {
    const config = RegistriesConfigSchema.parse({
      big: { url: "https://big.example/soap" },
      riziv: { url: "https://riziv.example" },
      mcsd: {
        registry: "NL-AGB",
        system: "http://fhir.nl/fhir/NamingSystem/agb-z",
        file: "/nonexistent.json",
      },
    });
    expect([...createRegistries(config, { log: silent }).keys()]).toEqual(["BIG", "RIZIV", "NL-AGB"]);
    expect(configuredPlugins(config).map((c) => c.plugin.id)).toEqual(["big", "riziv", "mcsd"]);
    expect(pluginFor(config, "riziv")).toMatchObject({ plugin: { id: "riziv" } });
    expect(pluginFor(config, "nl-agb")).toMatchObject({ plugin: { id: "mcsd" } });
    expect(pluginFor(config, "UZI")).toBeUndefined();
    // An extract without its registry named can only tell from its file.
    expect(pluginFor(RegistriesConfigSchema.parse({ extract: { file: "x.csv" } }), "UZI")).toBe("unknown");
  });

  it("spaces a registry's look-ups to its rate, whoever asks", async () => {
    const at: number[] = [];
    const adapter: RegistryAdapter = {
      registry: "T",
      validateNumber: (n) => ({ ok: true, normalised: n }),
      lookup: () => {
        at.push(Date.now());
        return Promise.resolve(undefined);
      },
    };
    const limited = limitRate(adapter, 20);
    await Promise.all([1, 2, 3, 4, 5].map((n) => limited.lookup(String(n))));
    const span = (at.at(-1) ?? 0) - (at[0] ?? 0);
    expect(span).toBeGreaterThanOrEqual(4 * 50 - 5);
    // A look-up waiting for its turn still honours its caller's abort.
    const slow = limitRate(adapter, 1);
    await slow.lookup("1");
    await expect(slow.lookup("2", { signal: AbortSignal.abort(new Error("gone")) })).rejects.toThrow("gone");
  });
});
