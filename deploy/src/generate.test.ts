import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadRegistration, parseConfig, ServiceConfigSchema } from "@medmesh/common";
import { PolicyModuleConfigSchema } from "@medmesh/policy-module";
import { BridgeConfigSchema } from "@medmesh/bridge";
import { DeploymentSchema } from "./config/schema.ts";
import { generateNetwork } from "./generate.ts";

type Yaml = Record<string, unknown> & {
  listeners: { port: number; tls: boolean; bind_addresses: string[]; resources: { names: string[] }[] }[];
  database: { name: string; args: Record<string, unknown> };
};

function deployment(
  profile: "test" | "production",
  extra: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
) {
  return parseConfig(
    DeploymentSchema,
    {
      ...top,
      data_dir: mkdtempSync(join(tmpdir(), "medmesh-gen-")),
      profile,
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
        },
        {
          id: "gp-b",
          name: "GP B",
          ports: {
            client: 18009,
            federation: 18449,
            synapse_client: 28009,
            synapse_federation: 28449,
            policy_module: 19101,
            bridge: 19201,
            bridge_interop: 19211,
          },
          database: {
            type: "postgres",
            host: "/run/postgresql",
            user: "synapse",
            password: "pw",
            database: "synapse_b",
          },
          ...extra,
        },
      ],
    },
    "test",
  );
}

const readYaml = (file: string): Yaml => parseYaml(readFileSync(file, "utf8")) as Yaml;

describe("organisation config generator", () => {
  it("writes a complete, federation-ready homeserver.yaml per organisation", async () => {
    const net = await generateNetwork(deployment("production"), "/");
    const [a, b] = net.organisations;
    const hs = readYaml(a!.paths.homeserverYaml);
    expect(hs.server_name).toBe("localhost:18448");
    // Synapse's own listeners are private, plain HTTP, behind the policy proxy.
    const listener = (r: string) => hs.listeners.find((l) => l.resources[0]?.names.includes(r));
    expect(listener("federation")).toMatchObject({
      port: 28448,
      tls: false,
      bind_addresses: ["127.0.0.1"],
      x_forwarded: true,
    });
    expect(listener("client")).toMatchObject({
      port: 28008,
      tls: false,
      bind_addresses: ["127.0.0.1"],
      x_forwarded: true,
    });
    expect(hs.public_baseurl).toBe("http://127.0.0.1:18008/");
    // The proxy serves the public ports and terminates federation TLS.
    const pm = parseConfig(
      PolicyModuleConfigSchema,
      parseYaml(readFileSync(a!.paths.policyModuleConfig, "utf8")),
      "pm",
    );
    expect(pm.proxy).toMatchObject({
      client: { host: "127.0.0.1", port: 18008 },
      federation: { host: "127.0.0.1", port: 18448, upstream: "http://127.0.0.1:28448" },
    });
    expect(hs.federation_verify_certificates).toBe(true);
    expect(hs.federation_custom_ca_list).toEqual([net.caCertificate]);
    expect(hs.ip_range_whitelist).toEqual(["127.0.0.0/8", "::1/128"]);
    expect(hs.trusted_key_servers).toEqual([]);
    expect(hs.redaction_retention_period).toBe("1h");
    expect(hs.rc_admin_redaction).toBeDefined();
    expect(hs.push).toEqual({ include_content: false });
    expect(hs.enable_registration).toBe(false);
    expect(hs.database).toEqual({ name: "sqlite3", args: { database: a!.paths.sqliteDb } });
    // Production profile keeps Synapse's default rate limits.
    expect(Object.keys(hs).filter((k) => k.startsWith("rc_") && k !== "rc_admin_redaction")).toEqual([]);

    const hsB = readYaml(b!.paths.homeserverYaml);
    expect(hsB.database).toMatchObject({
      name: "psycopg2",
      args: { host: "/run/postgresql", dbname: "synapse_b", user: "synapse" },
    });
    expect(hs.app_service_config_files).toEqual([
      a!.paths.policyModuleRegistration,
      a!.paths.bridgeRegistration,
    ]);
  });

  it("issues a TLS certificate from the local CA that verifies for localhost", async () => {
    const net = await generateNetwork(deployment("production"), "/");
    const org = net.organisations[0]!;
    const pm = parseConfig(
      PolicyModuleConfigSchema,
      parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")),
      "pm",
    );
    const certificate = pm.proxy!.federation.tls.certificate;
    const out = execFileSync("openssl", ["verify", "-CAfile", net.caCertificate, certificate], {
      encoding: "utf8",
    });
    expect(out).toContain(": OK");
    const text = execFileSync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", certificate], {
      encoding: "utf8",
    });
    expect(text).toContain("DNS:localhost");
    expect(text).toContain("IP Address:127.0.0.1");
  });

  it("relaxes rate limits only in the test profile", async () => {
    const hs = readYaml(
      (await generateNetwork(deployment("test"), "/")).organisations[0]!.paths.homeserverYaml,
    );
    expect(hs.rc_message).toEqual({ per_second: 1000, burst_count: 1000 });
    expect(hs.bcrypt_rounds).toBe(4);
    expect(hs.rc_joins).toBeDefined();
  });

  it("writes appservice registrations and service configs that agree, and keeps secrets across runs", async () => {
    const config = deployment("production");
    const first = await generateNetwork(config, "/");
    const org = first.organisations[0]!;
    const reg = loadRegistration(org.paths.policyModuleRegistration);
    expect(reg.url).toBe("http://127.0.0.1:19100");
    expect(reg.as_token).not.toBe(reg.hs_token);
    expect(statSync(org.paths.policyModuleRegistration).mode & 0o077).toBe(0);
    expect(statSync(org.paths.registrationSecret).mode & 0o077).toBe(0);
    expect(loadRegistration(org.paths.bridgeRegistration).as_token).not.toBe(reg.as_token);

    const svc = parseConfig(
      ServiceConfigSchema,
      parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")),
      "pm",
    );
    expect(svc.homeserver).toEqual({ server_name: "localhost:18448", url: "http://127.0.0.1:28008" });
    expect(svc.appservice.registration_file).toBe(org.paths.policyModuleRegistration);
    expect(svc.listen.port).toBe(19100);

    const signingKey = readFileSync(org.paths.signingKey, "utf8");
    expect(signingKey).toMatch(/^ed25519 a_\w{4} [A-Za-z0-9+/]{43}\n$/);
    const secret = readFileSync(org.paths.registrationSecret, "utf8");
    const again = (await generateNetwork(config, "/")).organisations[0]!;
    expect(readFileSync(again.paths.signingKey, "utf8")).toBe(signingKey);
    expect(readFileSync(again.paths.registrationSecret, "utf8")).toBe(secret);
    expect(loadRegistration(again.paths.policyModuleRegistration).hs_token).toBe(reg.hs_token);
  });

  it("passes each registry plug-in's config on, its file fields resolved, and the identity settings per organisation", async () => {
    const config = deployment(
      "production",
      { require_id_document: false, duplicate_number: "review" },
      {
        identity: {
          registries: {
            extract: { file: "registry.csv", registry: "BIG" },
            mcsd: { registry: "UZI", system: "urn:oid:2.16.528.1.1007.3.1", file: "feeds/uzi.json" },
          },
        },
      },
    );
    const { organisations } = await generateNetwork(config, "/srv/medmesh");
    const identityOf = (i: number) =>
      parseConfig(
        PolicyModuleConfigSchema,
        parseYaml(readFileSync(organisations[i]!.paths.policyModuleConfig, "utf8")),
        "pm",
      ).identity;
    const a = identityOf(0);
    expect(a.registries.extract).toEqual({ file: "/srv/medmesh/registry.csv", registry: "BIG" });
    expect(a.registries.mcsd).toMatchObject({ registry: "UZI", file: "/srv/medmesh/feeds/uzi.json" });
    expect(a).toMatchObject({ require_id_document: true, duplicate_number: "refuse" });
    expect(identityOf(1)).toMatchObject({ require_id_document: false, duplicate_number: "review" });
  });

  it("writes an admin token per service (0600, kept across runs) and gives the bridge a public listener", async () => {
    const config = deployment("production");
    const org = (await generateNetwork(config, "/")).organisations[0]!;
    const pm = parseConfig(PolicyModuleConfigSchema, readYaml(org.paths.policyModuleConfig), "pm");
    const bridge = parseConfig(BridgeConfigSchema, readYaml(org.paths.bridgeConfig), "bridge");
    expect(pm.admin).toEqual({
      token_file: org.paths.policyModuleAdminToken,
      matrix_admins: true,
      synapse_url: "http://127.0.0.1:28008",
      cache_seconds: 30,
    });
    // The bridge reaches Matrix through the proxy, but checks admins' tokens with Synapse itself.
    expect(bridge.homeserver.url).toBe("http://127.0.0.1:18008");
    expect(bridge.admin.synapse_url).toBe("http://127.0.0.1:28008");
    expect(bridge.admin.token_file).toBe(org.paths.bridgeAdminToken);
    const tokens = [org.paths.policyModuleAdminToken, org.paths.bridgeAdminToken].map((f) => {
      expect(statSync(f).mode & 0o077).toBe(0);
      return readFileSync(f, "utf8").trim();
    });
    expect(tokens[0]).toMatch(/^[\w-]{43}$/);
    expect(tokens[0]).not.toBe(tokens[1]);
    expect(org.adminTokenFiles).toEqual({
      "policy-module": org.paths.policyModuleAdminToken,
      bridge: org.paths.bridgeAdminToken,
    });
    // Internal listener (Synapse's appservice URL) and public interop listener differ.
    expect(bridge.listen.port).toBe(19200);
    expect(loadRegistration(org.paths.bridgeRegistration).url).toBe("http://127.0.0.1:19200");
    expect(bridge.interop?.listen).toEqual({ host: "127.0.0.1", port: 19210 });
    expect(bridge.interop?.public_url).toBe("http://127.0.0.1:19210");
    expect(org.bridgeInteropUrl).toBe("http://127.0.0.1:19210");
    expect(pm.trust?.open_federation).toBe(false);

    const again = (await generateNetwork(config, "/")).organisations[0]!;
    expect(readFileSync(again.paths.policyModuleAdminToken, "utf8").trim()).toBe(tokens[0]);
  });

  it("rejects a deployment whose organisations collide, naming the field", () => {
    expect(() =>
      deployment("production", {
        id: "hospital-a",
        ports: {
          client: 18008,
          federation: 18449,
          synapse_client: 3,
          synapse_federation: 4,
          policy_module: 1,
          bridge: 2,
          bridge_interop: 5,
        },
      }),
    ).toThrow(
      /organisations\.1\.id: id 'hospital-a' is already used by organisations\.0[\s\S]*organisations\.1\.ports\.client: port 18008/,
    );
  });
});
