import { IdentityConfigSchema, LimitsOverrideSchema, RetentionConfigSchema } from "@medmesh/policy-module";
import { z } from "zod";
import { InteropVendorSchema } from "@medmesh/bridge";
import { ServerNameSchema } from "@medmesh/common";
import { SsoSchema, ssoProblems } from "./sso-schema.ts";
import { WorkersSchema, workerProblems } from "./workers-schema.ts";

export { SsoSchema } from "./sso-schema.ts";

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

/** How many replicas of a service the local runner starts (1–8; more than one needs PostgreSQL). */
const replicasField = (description: string) =>
  z.number().int().min(1).max(8).default(1).describe(description);

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
  profile: z
    .enum(["medmesh", "tim-pro", "tim-epa"])
    .default("medmesh")
    .describe(
      "Rule profile: MedMesh's own defaults, or gematik TI-Messenger's for an organisation of " +
        "professionals (tim-pro) or of insured persons (tim-epa); see docs/tim-profile.md.",
    ),
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
  workers: WorkersSchema.optional(),
  store: StoreSchema,
  policy_module_replicas: replicasField(
    "Policy-module replicas the local runner starts on this organisation's store (PostgreSQL only); " +
      "singleton jobs run on an elected leader (docs/replicas.md).",
  ),
  bridge_replicas: replicasField(
    "Bridge replicas the local runner starts on this organisation's store (PostgreSQL only), behind a " +
      "balancer on the bridge's ports; each vendor is carried by the leader of its lease (docs/replicas.md).",
  ),
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
  tim_driver: z
    .object({
      port: port.describe("Its REST API (gematik's TiMessengerTestTreiber, docs/tim-driver.md)."),
      devices: z.number().int().min(3).default(3).describe("Devices in its pool, each with its own account."),
    })
    .optional()
    .describe(
      "Test networks only: run a TI-Messenger test driver for this homeserver, for gematik's test suite.",
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
            redis: z.string().default("redis"),
          })
          .default({ synapse: "synapse", policy_module: "policy-module", bridge: "bridge", redis: "redis" })
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
        else seen.set(what, path.join("."));
      };
      claim(`id '${org.id}'`, ["organisations", i, "id"]);
      claim(`server name '${serverNameOf(org)}'`, ["organisations", i, "server_name"]);
      for (const [k, p] of Object.entries(org.ports)) {
        claim(`port ${p} on ${org.bind_address}`, ["organisations", i, "ports", k]);
      }
      if (org.sso) ssoProblems(cfg, org, ["organisations", i, "sso"], ctx);
      for (const field of ["policy_module_replicas", "bridge_replicas"] as const)
        if (org[field] > 1 && org.store.type !== "postgres")
          ctx.addIssue({
            code: "custom",
            path: ["organisations", i, field],
            message: "replicas share one store: set store.type: postgres (PGlite is one process's database)",
          });
      if (org.workers) {
        const claimPort = (p: number, path: (string | number)[]) => {
          claim(`port ${String(p)} on ${org.bind_address}`, ["organisations", i, ...path]);
        };
        for (const issue of workerProblems(org.workers, org.database.type, claimPort))
          ctx.addIssue({ code: "custom", path: ["organisations", i, ...issue.path], message: issue.message });
      }
      if (org.tim_driver)
        claim(`port ${org.tim_driver.port} on ${org.bind_address}`, [
          "organisations",
          i,
          "tim_driver",
          "port",
        ]);
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

export type OrganisationConfig = z.output<typeof OrganisationSchema>;

export function serverNameOf(org: Pick<OrganisationConfig, "server_name" | "ports">): string {
  return org.server_name ?? `localhost:${org.ports.federation}`;
}
