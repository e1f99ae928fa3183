import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "@medmesh/common";
import { describe, expect, it } from "vitest";
import { DeploymentSchema } from "./config/schema.ts";

// Policy-module replicas (docs/replicas.md): they share one store, so only on PostgreSQL.
const deployment = (org: Record<string, unknown>) =>
  parseConfig(
    DeploymentSchema,
    {
      data_dir: mkdtempSync(join(tmpdir(), "medmesh-replicas-")),
      profile: "test",
      organisations: [
        {
          id: "hospital-a",
          name: "Hospital A",
          ports: {
            client: 18008,
            federation: 18448,
            synapse_client: 28008,
            synapse_federation: 28448,
            policy_module: 19100,
            bridge: 19200,
            bridge_interop: 19210,
          },
          ...org,
        },
      ],
    },
    "test deployment",
  );

describe("policy_module_replicas", () => {
  it("is one by default", () => {
    expect(deployment({}).organisations[0]?.policy_module_replicas).toBe(1);
  });

  it("refuses more than one on the embedded store, naming the field", () => {
    expect(() => deployment({ policy_module_replicas: 2 })).toThrow(
      /organisations\.0\.policy_module_replicas: replicas share one store: set store\.type: postgres/,
    );
  });

  it("takes several on PostgreSQL", () => {
    const d = deployment({
      policy_module_replicas: 2,
      store: { type: "postgres", url: "postgres://medmesh@db/medmesh" },
    });
    expect(d.organisations[0]?.policy_module_replicas).toBe(2);
  });
});

describe("bridge_replicas", () => {
  it("is one by default, refused on the embedded store, several on PostgreSQL", () => {
    expect(deployment({}).organisations[0]?.bridge_replicas).toBe(1);
    expect(() => deployment({ bridge_replicas: 2 })).toThrow(
      /organisations\.0\.bridge_replicas: replicas share one store: set store\.type: postgres/,
    );
    const d = deployment({
      bridge_replicas: 3,
      store: { type: "postgres", url: "postgres://medmesh@db/medmesh" },
    });
    expect(d.organisations[0]?.bridge_replicas).toBe(3);
  });
});
