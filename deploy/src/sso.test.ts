import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadRegistration, parseConfig } from "@medmesh/common";
import { PolicyModuleConfigSchema } from "@medmesh/policy-module";
import { DeploymentSchema } from "./config/schema.ts";
import { generateNetwork } from "./generate.ts";

const PORTS = {
  client: 18008,
  federation: 18448,
  synapse_client: 28008,
  synapse_federation: 28448,
  policy_module: 19100,
  bridge: 19200,
  bridge_interop: 19210,
};

function secretFile(value = "s3cret-from-the-idp"): string {
  const file = join(mkdtempSync(join(tmpdir(), "medmesh-sso-")), "oidc_client_secret");
  writeFileSync(file, `${value}\n`);
  return file;
}

function deployment(sso: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) {
  // The deployment's profile (test/production), not the organisation's rule profile.
  const { profile, ...orgExtra } = extra;
  return parseConfig(
    DeploymentSchema,
    {
      data_dir: mkdtempSync(join(tmpdir(), "medmesh-gen-sso-")),
      identity: { registries: { big: { url: "https://big.example/soap" } } },
      organisations: [
        { id: "hospital-a", name: "Hospital A", ports: PORTS, ...(sso ? { sso } : {}), ...orgExtra },
      ],
      ...(profile ? { profile } : {}),
    },
    "test",
  );
}

const SSO = {
  issuer: "https://login.hospital-a.example/realms/staff",
  client_id: "medmesh-synapse",
  claims: { registration_number: { claim: "big_number", registry: "BIG" } },
  password_login: false,
  client_redirect_urls: ["https://chat.hospital-a.example/"],
};

const readYaml = (file: string) => parseYaml(readFileSync(file, "utf8")) as Record<string, unknown>;

describe("single sign-on in the generated configs", () => {
  it("configures Synapse's OIDC provider (PKCE always), the mapping provider, and password login off", async () => {
    const secret = secretFile();
    const org = (await generateNetwork(deployment({ ...SSO, client_secret_file: secret }), "/"))
      .organisations[0]!;
    const hs = readYaml(org.paths.homeserverYaml);
    expect(hs.oidc_providers).toEqual([
      {
        idp_id: "hospital-a",
        idp_name: "Hospital A",
        issuer: SSO.issuer,
        discover: true,
        client_id: "medmesh-synapse",
        client_secret_path: org.paths.oidcClientSecret,
        client_auth_method: "client_secret_basic",
        scopes: ["openid", "profile"],
        pkce_method: "always",
        user_profile_method: "auto",
        allow_existing_users: false,
        enable_registration: true,
        user_mapping_provider: {
          module: "medmesh_synapse.oidc.MedMeshOidcMapping",
          config: {
            decision_url: "http://127.0.0.1:19100",
            token_file: org.paths.decisionToken,
            timeout_ms: 2000,
            idp_id: "oidc-hospital-a",
            forward_claims: ["name", "big_number"],
            localpart_template: '{{ (user["preferred_username"] or "") | localpart_from_email }}',
            display_name_template: '{{ (user["name"] or "") }}',
          },
        },
      },
    ]);
    expect(hs.password_config).toEqual({ enabled: false });
    // The organisation's own clients, and its admin console's sign-in page.
    expect(hs.sso).toEqual({
      client_whitelist: [
        "https://chat.hospital-a.example/",
        `${String(hs.public_baseurl)}_medmesh/console/sign-in`,
      ],
    });
    // The secret is copied for Synapse, 0600; never written into homeserver.yaml itself.
    expect(readFileSync(org.paths.oidcClientSecret, "utf8")).toBe("s3cret-from-the-idp\n");
    expect(statSync(org.paths.oidcClientSecret).mode & 0o077).toBe(0);
    expect(readFileSync(org.paths.homeserverYaml, "utf8")).not.toContain("s3cret");

    const pm = parseConfig(PolicyModuleConfigSchema, readYaml(org.paths.policyModuleConfig), "pm");
    expect(pm.identity.sso).toEqual({
      idp_id: "oidc-hospital-a",
      organisation_name: "Hospital A",
      name_claim: "name",
      registration: { claim: "big_number", registry: "BIG" },
    });
    expect(pm.proxy?.single_sign_on).toBe(true);
    // MedMesh's admin account logs in as the appservice: password login is off.
    expect(pm.synapse_admin?.login).toBe("appservice");
    expect(loadRegistration(org.paths.policyModuleRegistration).namespaces.users).toContainEqual({
      exclusive: false,
      regex: "@medmesh-admin:localhost:18448",
    });
  });

  it("leaves password login and the admin's password login alone where it stays on, and adds nothing without sso", async () => {
    const on = (
      await generateNetwork(
        deployment({ ...SSO, password_login: true, client_secret_file: secretFile() }),
        "/",
      )
    ).organisations[0]!;
    expect(readYaml(on.paths.homeserverYaml).password_config).toBeUndefined();
    expect(readYaml(on.paths.policyModuleConfig).synapse_admin).toMatchObject({ login: "password" });

    const none = (await generateNetwork(deployment(undefined), "/")).organisations[0]!;
    const hs = readYaml(none.paths.homeserverYaml);
    expect(hs.oidc_providers).toBeUndefined();
    expect(hs.password_config).toBeUndefined();
    const pm = parseConfig(PolicyModuleConfigSchema, readYaml(none.paths.policyModuleConfig), "pm");
    expect(pm.identity.sso).toBeUndefined();
    expect(pm.proxy?.single_sign_on).toBe(false);
    // The bots' and the department accounts' namespaces; no appservice login for the admin account.
    const users = loadRegistration(none.paths.policyModuleRegistration).namespaces.users;
    expect(users).toHaveLength(2);
    expect(users.map((u) => u.regex).join(" ")).not.toContain("medmesh-admin");
  });

  it("refuses bad sso settings with errors that name the field", async () => {
    const base = { ...SSO, client_secret_file: "x" };
    expect(() => deployment({ ...base, issuer: "http://login.hospital-a.example/" })).toThrow(
      /organisations\.0\.sso\.issuer: must be https/,
    );
    // A loopback test identity provider may use http in the test profile only.
    expect(() =>
      deployment({ ...base, issuer: "http://127.0.0.1:9999/" }, { profile: "test" }),
    ).not.toThrow();
    expect(() =>
      deployment({ ...base, claims: { registration_number: { claim: "riziv", registry: "RIZIV" } } }),
    ).toThrow(/sso\.claims\.registration_number\.registry: RIZIV is not a registry of identity\.registries/);
    expect(() => deployment({ ...base, scopes: ["profile"] })).toThrow(/sso\.scopes: must include openid/);
    expect(() => deployment({ ...base, claims: { name: 'x"}}' } })).toThrow(
      /sso\.claims\.name: must be a claim name/,
    );
    expect(() =>
      deployment(base, { demo_users: [{ localpart: "alice", password: "a-long-password" }] }),
    ).toThrow(/sso\.password_login: is false, but demo_users sign in with passwords/);
    expect(() => deployment({ ...SSO })).toThrow(/sso\.client_secret_file/);
    await expect(
      generateNetwork(deployment({ ...base, client_secret_file: "/nonexistent/secret" }), "/"),
    ).rejects.toThrow(/hospital-a: sso\.client_secret_file: \/nonexistent\/secret cannot be read \(ENOENT\)/);
    await expect(
      generateNetwork(deployment({ ...base, client_secret_file: secretFile("") }), "/"),
    ).rejects.toThrow(/sso\.client_secret_file: .* is empty/);
  });
});
