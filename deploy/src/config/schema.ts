import {
  IdentityConfigSchema,
  LimitsOverrideSchema,
  pluginFor,
  RetentionConfigSchema,
} from "@medmesh/policy-module";
import { z } from "zod";
import { InteropVendorSchema } from "@medmesh/bridge";
import { ServerNameSchema } from "@medmesh/common";

const port = z.number().int().min(1).max(65535);
const duration = z
  .string()
  .regex(/^\d+(ms|s|m|h|d|w|y)$/, "must be a Synapse duration such as 30s, 5m, 1h, 7d");

export const SynapseDatabaseSchema = z
  .discriminatedUnion("type", [
    z.object({
      type: z.literal("sqlite").describe("SQLite file in the organisation's data folder (embedded default)."),
    }),
    z.object({
      type: z
        .literal("postgres")
        .describe("PostgreSQL; the database must exist with C collation (Synapse requires it)."),
      host: z.string().min(1).describe("PostgreSQL host or socket directory."),
      port: port.default(5432),
      user: z.string().min(1),
      password: z
        .string()
        .describe("Use ${file:/run/secrets/…} or ${env:NAME} rather than a literal.")
        .optional(),
      database: z.string().min(1),
    }),
  ])
  .default({ type: "sqlite" })
  .describe("Synapse's database.");

export const StoreSchema = z
  .discriminatedUnion("type", [
    z.object({
      type: z.literal("pglite").describe("Embedded PostgreSQL (PGlite) in the organisation's data folder."),
    }),
    z.object({
      type: z.literal("postgres").describe("A PostgreSQL server."),
      url: z.string().min(1).describe("postgres:// URL without the password."),
      password: z.string().optional().describe("Database password; use ${file:…} or ${env:…}."),
    }),
  ])
  .default({ type: "pglite" })
  .describe("Store of the MedMesh services (policy-module, bridge).");

export const DemoUserSchema = z.object({
  localpart: z.string().regex(/^[a-z0-9._=\-/]+$/, "must be a valid Matrix localpart (lower case)"),
  password: z.string().min(8, "must be at least 8 characters"),
  display_name: z.string().optional(),
  admin: z.boolean().default(false),
});

// A claim name as Synapse's Jinja templates read it (user["…"]): no quotes, braces or spaces.
const claimName = z
  .string()
  .regex(/^[^"'\\{}%\s]{1,128}$/, "must be a claim name (no quotes, braces, % or spaces)");

export const SsoSchema = z
  .object({
    issuer: z
      .url({ protocol: /^https?$/ })
      .describe(
        "The identity provider's issuer URL (OIDC discovery at /.well-known/openid-configuration). " +
          "https; plain http only for a loopback test provider in the 'test' profile.",
      )
      .meta({ examples: ["https://login.hospital-a.example/realms/staff"] }),
    client_id: z
      .string()
      .min(1)
      .describe("The client registered at the identity provider for this organisation's Synapse.")
      .meta({ examples: ["medmesh-synapse"] }),
    client_secret_file: z
      .string()
      .min(1)
      .describe(
        "File holding the client secret (relative to this config). Read at generation time and " +
          "written for Synapse to its secrets folder (mode 0600); never a literal in this file.",
      )
      .meta({ examples: ["../../deploy/docker/secrets/oidc_client_secret"] }),
    client_auth_method: z
      .enum(["client_secret_basic", "client_secret_post"])
      .default("client_secret_basic")
      .describe("How Synapse authenticates at the token endpoint."),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, "must be an OAuth scope"))
      .default(["openid", "profile"])
      .refine((s) => s.includes("openid"), "must include openid")
      .describe("Scopes Synapse asks for; openid is required."),
    user_profile_method: z
      .enum(["auto", "userinfo_endpoint"])
      .default("auto")
      .describe(
        "Where the claims come from: the ID token (auto) or the userinfo endpoint (for providers " +
          "that put only `sub` in the ID token).",
      ),
    claims: z
      .object({
        localpart: claimName
          .default("preferred_username")
          .describe("Claim for the Matrix user name; an e-mail-like value keeps the part before @."),
        display_name: claimName.default("name").describe("Claim for the display name."),
        name: claimName
          .default("name")
          .describe("Claim with the person's name as the registry should list it (the name check)."),
        registration_number: z
          .object({
            claim: claimName.describe("The claim carrying the registration number."),
            registry: z
              .string()
              .min(1)
              .describe("The registry it belongs to: one of identity.registries (BIG, RIZIV, DEMO, …)."),
          })
          .optional()
          .describe(
            "Where the identity provider asserts the registration number; without it clinicians " +
              "enter it once. It is checked against the registry either way.",
          )
          .meta({ examples: [{ claim: "big_number", registry: "BIG" }] }),
      })
      .prefault({})
      .describe("Which claims of the identity provider MedMesh uses."),
    password_login: z
      .boolean()
      .default(true)
      .describe(
        "Allow password login beside single sign-on. false: Synapse refuses m.login.password, so " +
          "only the identity provider signs people in (MedMesh's own accounts use appservice login).",
      ),
    client_redirect_urls: z
      .array(z.url({ protocol: /^https?$/ }))
      .default([])
      .describe(
        "Client URLs (prefixes) Synapse may send the login token to without asking the person " +
          "first (Synapse's sso.client_whitelist), e.g. the organisation's Element.",
      )
      .meta({ examples: [["https://chat.hospital-a.example/"]] }),
  })
  .describe(
    "Single sign-on with the organisation's identity provider (OIDC, authorization code with PKCE): " +
      "accounts it creates count as identity-proven by the organisation (docs/identity.md).",
  );

export const OrganisationSchema = z.object({
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]*$/, "must be a lower-case slug (a-z, 0-9, -)")
    .describe("Short identifier, used for folder names.")
    .meta({ examples: ["hospital-a"] }),
  name: z
    .string()
    .min(1)
    .describe("Display name of the organisation.")
    .meta({ examples: ["Hospital A"] }),
  server_name: ServerNameSchema.optional()
    .describe("Matrix server name. Defaults to localhost:<federation port> for a local network.")
    .meta({ examples: ["matrix.hospital-a.example"] }),
  bind_address: z
    .string()
    .default("127.0.0.1")
    .describe("Address every listener of this organisation binds to."),
  public_baseurl: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe(
      "Public URL of the client API (behind the reverse proxy). Defaults to the local client listener.",
    )
    .meta({ examples: ["https://matrix.hospital-a.example/"] }),
  ports: z
    .object({
      client: port
        .describe(
          "Client-server API as clients reach it: the MedMesh policy proxy (plain HTTP, behind the org's TLS reverse proxy).",
        )
        .meta({ examples: [8008] }),
      federation: port
        .describe("Federation API as other homeservers reach it: the MedMesh policy proxy (TLS).")
        .meta({ examples: [8448] }),
      synapse_client: port
        .describe("Synapse's own client listener, reachable only by MedMesh (loopback / container network).")
        .meta({ examples: [18008] }),
      synapse_federation: port
        .describe("Synapse's own federation listener (plain HTTP), reachable only by MedMesh.")
        .meta({ examples: [18448] }),
      policy_module: port
        .describe("policy-module internal HTTP (health; metrics and admin API with a token; appservice).")
        .meta({ examples: [9100] }),
      bridge: port
        .describe("bridge internal HTTP (health; metrics and admin API with a token; appservice).")
        .meta({ examples: [9200] }),
      bridge_interop: port
        .describe(
          "bridge public HTTP: the interop API vendors call, nothing else (behind the org's TLS reverse proxy).",
        )
        .meta({ examples: [9210] }),
    })
    .describe("TCP ports; all must differ."),
  tls: z
    .object({
      certificate: z.string().describe("PEM certificate chain for the federation listener."),
      private_key: z.string().describe("PEM private key."),
    })
    .optional()
    .describe("Federation TLS. When omitted, a certificate is issued by the network's local CA."),
  database: SynapseDatabaseSchema,
  store: StoreSchema,
  demo_users: z
    .array(DemoUserSchema)
    .default([])
    .describe("Users created at start (local demo networks only; never in production)."),
  verified_clinicians: z
    .array(
      z.object({
        localpart: z.string().min(1),
        display_name: z.string().min(1),
        profession: z.string().min(1),
      }),
    )
    .default([])
    .describe(
      "Clinicians of this organisation whose registration its admin has checked (interim, see identity).",
    ),
  require_id_document: z
    .boolean()
    .default(true)
    .describe(
      "Ask self-registered clinicians for an ID document, reviewed by the organisation's admin, before a " +
        "first verification (accounts of the organisation's single sign-on are never asked).",
    ),
  duplicate_number: z
    .enum(["refuse", "review"])
    .default("refuse")
    .describe(
      "A registration number already bound to another account of this organisation: refuse the claim, or " +
        "send it to the admin's review with the conflict shown.",
    ),
  sso: SsoSchema.optional(),
  demo_vendor: z
    .object({
      id: z.string().regex(/^[a-z0-9-]{1,32}$/),
      port: port.describe("Its REST API and webhook."),
      users: z.array(z.object({ id: z.string().min(1), display_name: z.string().min(1) })).default([]),
    })
    .optional()
    .describe(
      "Local demo networks only: run the reference messenger (bridge/src/vendor) beside this organisation's bridge, as a vendor it is configured for.",
    ),
  bridge_vendors: z
    .array(InteropVendorSchema)
    .default([])
    .describe("Messengers this organisation's bridge exchanges conversations with (docs/interop-api.md)."),
  proxy_limits: LimitsOverrideSchema.prefault({}).describe(
    "Overrides of the policy proxy's body size limits, timeouts and rate limits (policy-module " +
      "proxy.limits). Synapse's max_upload_size follows media_body_bytes.",
  ),
});

const TrustSourceSchema = z.union([z.object({ file: z.string() }), z.object({ url: z.url() })]);

export const DeploymentTrustSchema = z
  .object({
    sign_locally: z
      .boolean()
      .default(true)
      .describe(
        "Act as the network operator for this deployment's organisations: keep an operator key in " +
          "data_dir/trust and sign a list of them at every start. For a local network and tests.",
      ),
    unlisted: z
      .array(z.string())
      .default([])
      .describe("Organisation ids the locally signed list leaves out (they are not trusted)."),
    operator_keys: z
      .array(z.string())
      .default([])
      .describe("Public keys (JWK files) of external network operators whose lists are trusted."),
    lists: z.array(TrustSourceSchema).default([]).describe("External signed trust lists (file or URL)."),
    refresh_seconds: z.number().positive().default(300).describe("How often the lists are fetched again."),
  })
  .describe("Closed federation: which signed trust lists the organisations follow.");

export const DeploymentSchema = z
  .object({
    data_dir: z
      .string()
      .default(".medmesh/local")
      .describe("Folder for generated config, keys, databases and logs (relative to the config file)."),
    profile: z
      .enum(["production", "test"])
      .default("production")
      .describe("'test' relaxes Synapse's rate limits for automated tests; never use it for real users."),
    synapse_venv: z
      .string()
      .default("deploy/.venv")
      .describe("Python venv holding the pinned Synapse (relative to the repository root)."),
    redaction_retention_period: duration
      .default("1h")
      .describe(
        "How long Synapse keeps the content of redacted events before erasing it (retention relies on this).",
      ),
    container: z
      .object({
        data_dir: z
          .string()
          .regex(/^\//, "must be an absolute path inside the containers")
          .describe("Where data_dir is mounted inside every container; generated configs use these paths.")
          .meta({ examples: ["/data"] }),
        hosts: z
          .object({
            synapse: z.string().default("synapse"),
            policy_module: z.string().default("policy-module"),
            bridge: z.string().default("bridge"),
          })
          .default({ synapse: "synapse", policy_module: "policy-module", bridge: "bridge" })
          .describe("Host names of the services on the container network (docker compose service names)."),
      })
      .optional()
      .describe(
        "Set when the organisation runs in containers (docker-compose.yml); omit for processes on one host.",
      ),
    trust: DeploymentTrustSchema.prefault({}),
    identity: IdentityConfigSchema.omit({
      verified_clinicians: true,
      require_id_document: true,
      duplicate_number: true,
      sso: true,
    })
      .prefault({})
      .describe("Clinician identity for every organisation: registries, validity, re-verification."),
    retention: RetentionConfigSchema.prefault({}).describe(
      "Message retention for every organisation (allow_clock_override follows the test profile).",
    ),
    trusted_ca_files: z
      .array(z.string())
      .default([])
      .describe("Extra CA certificates federation peers may present (PEM files)."),
    organisations: z
      .array(OrganisationSchema)
      .min(1, "at least one organisation is required")
      .describe(
        "The organisations of this deployment: one for a production host, several for a local network.\n" +
          "Fields per organisation: id, name, server_name, bind_address, ports, tls, database, store, demo_users.",
      )
      .meta({
        examples: [
          [
            {
              id: "hospital-a",
              name: "Hospital A",
              server_name: "matrix.hospital-a.example",
              bind_address: "0.0.0.0",
              ports: {
                client: 8008,
                federation: 8448,
                synapse_client: 18008,
                synapse_federation: 18448,
                policy_module: 9100,
                bridge: 9200,
                bridge_interop: 9210,
              },
              tls: {
                certificate: "/etc/medmesh/tls/fullchain.pem",
                private_key: "/etc/medmesh/tls/privkey.pem",
              },
              database: {
                type: "postgres",
                host: "postgres",
                port: 5432,
                user: "synapse",
                password: "${file:/run/secrets/synapse_db_password}",
                database: "synapse",
              },
              store: {
                type: "postgres",
                url: "postgres://medmesh@postgres:5432/medmesh",
                password: "${file:/run/secrets/medmesh_db_password}",
              },
            },
          ],
        ],
      }),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, string>();
    cfg.organisations.forEach((org, i) => {
      const claim = (what: string, path: (string | number)[]) => {
        const prev = seen.get(what);
        if (prev) ctx.addIssue({ code: "custom", path, message: `${what} is already used by ${prev}` });
        else seen.set(what, `organisations.${i}`);
      };
      claim(`id '${org.id}'`, ["organisations", i, "id"]);
      claim(`server name '${serverNameOf(org)}'`, ["organisations", i, "server_name"]);
      for (const [k, p] of Object.entries(org.ports)) {
        claim(`port ${p} on ${org.bind_address}`, ["organisations", i, "ports", k]);
      }
      if (org.sso) ssoProblems(cfg, org, ["organisations", i, "sso"], ctx);
      if (org.demo_vendor)
        claim(`port ${org.demo_vendor.port} on ${org.bind_address}`, [
          "organisations",
          i,
          "demo_vendor",
          "port",
        ]);
    });
  });

export type DeploymentConfig = z.output<typeof DeploymentSchema>;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

/** What a schema alone cannot say about an organisation's sso section. */
function ssoProblems(
  cfg: { profile: string; identity: { registries: Record<string, unknown> } },
  org: { sso?: z.output<typeof SsoSchema> | undefined; demo_users: unknown[] },
  path: (string | number)[],
  ctx: z.RefinementCtx,
): void {
  const sso = org.sso;
  if (!sso) return;
  const issuer = new URL(sso.issuer);
  if (issuer.protocol === "http:" && !(cfg.profile === "test" && LOOPBACK.test(issuer.hostname))) {
    ctx.addIssue({
      code: "custom",
      path: [...path, "issuer"],
      message: "must be https (plain http only for a loopback test identity provider in the 'test' profile)",
    });
  }
  const registration = sso.claims.registration_number;
  if (registration) {
    // The registry plug-ins say which names they answer for; an extract without its registry
    // named can only tell from its file, so it is given the benefit of the doubt.
    if (pluginFor(cfg.identity.registries, registration.registry) === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [...path, "claims", "registration_number", "registry"],
        message: `${registration.registry} is not a registry of identity.registries (none of the configured registry plug-ins answers for it)`,
      });
    }
  }
  if (!sso.password_login && org.demo_users.length > 0) {
    ctx.addIssue({
      code: "custom",
      path: [...path, "password_login"],
      message: "is false, but demo_users sign in with passwords: remove them or allow password login",
    });
  }
}
export type OrganisationConfig = z.output<typeof OrganisationSchema>;

export function serverNameOf(org: Pick<OrganisationConfig, "server_name" | "ports">): string {
  return org.server_name ?? `localhost:${org.ports.federation}`;
}
