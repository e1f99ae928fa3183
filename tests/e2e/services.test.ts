import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { start as startBridge } from "@medmesh/bridge";
import { createLogger, registerWithSharedSecret, transactionKey, type RunningService } from "@medmesh/common";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { REPO_ROOT } from "@medmesh/deploy";
import { adminApi, OpenApiContract, useTestNetwork, type ServiceName } from "../harness/index.ts";

const net = useTestNetwork({ name: "services" });
const contract = new OpenApiContract(join(REPO_ROOT, "common", "openapi", "service.yaml"));

function service(orgIndex: number, name: string): RunningService {
  const svc = net().orgs[orgIndex]?.services.find((s) => s.name === name);
  if (!svc) throw new Error(`no ${name} in organisation ${String(orgIndex)}`);
  return svc;
}

async function transactionsCounted(svc: RunningService, outcome: string): Promise<number> {
  const metric = await svc.metrics.getSingleMetric("medmesh_appservice_transactions_total")?.get();
  return metric?.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

function putTransaction(svc: RunningService, txnId: string, token?: string): Promise<Response> {
  return fetch(`${svc.url}/_matrix/app/v1/transactions/${txnId}`, {
    method: "PUT",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ events: [] }),
  });
}

describe("MedMesh services beside Synapse", () => {
  it("report healthy with their store and homeserver checks, and expose metrics", async () => {
    for (const org of net().orgs) {
      for (const svc of org.services) {
        const res = await fetch(`${svc.url}/health`);
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({
          service: svc.name,
          status: "ok",
          checks: {
            store: "ok",
            homeserver: "ok",
            ...(svc.name === "policy-module" ? { trust_list: "ok" } : {}),
          },
        });
        const metrics = await adminApi(org, svc.name as ServiceName).metrics();
        expect(metrics).toContain(`process_resident_memory_bytes{service="${svc.name}"}`);
      }
    }
  });

  it("receive Synapse's appservice transactions for their namespace and journal them", async () => {
    const org = net().orgs[0]!;
    const policy = service(0, "policy-module");
    const before = await transactionsCounted(policy, "processed");
    const user = await net().registerUser(org);
    const client = await net().client(user);
    const bot = `@medmesh:${org.serverName}`;
    await client.createRoom({ invite: [bot] });
    const deadline = Date.now() + 20_000;
    while ((await transactionsCounted(policy, "processed")) === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await transactionsCounted(policy, "processed")).toBeGreaterThan(before);
  });

  it("refuse transactions without the homeserver token and recognise replays", async () => {
    const bridge = service(0, "bridge");
    const missing = await putTransaction(bridge, "t-missing");
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ errcode: "M_MISSING_TOKEN" });
    const wrong = await putTransaction(bridge, "t-wrong", bridge.registration.as_token);
    expect(wrong.status).toBe(403);
    expect(await wrong.json()).toMatchObject({ errcode: "M_FORBIDDEN" });
    expect(
      await bridge.store.transactions.isProcessed(
        bridge.registration.id,
        transactionKey("t-wrong", { events: [] }),
      ),
    ).toBe(false);

    const replayedBefore = await transactionsCounted(bridge, "replayed");
    expect((await putTransaction(bridge, "t-once", bridge.registration.hs_token)).status).toBe(200);
    expect(
      await bridge.store.transactions.isProcessed(
        bridge.registration.id,
        transactionKey("t-once", { events: [] }),
      ),
    ).toBe(true);
    expect((await putTransaction(bridge, "t-once", bridge.registration.hs_token)).status).toBe(200);
    expect(await transactionsCounted(bridge, "replayed")).toBe(replayedBefore + 1);
  });

  it("serve every operation of their OpenAPI document as documented", async () => {
    const exercised = new Set<string>();
    const check = async (operation: string, res: Response): Promise<void> => {
      exercised.add(operation);
      await contract.check(operation, res);
    };
    for (const org of net().orgs) {
      for (const svc of org.services) {
        const hsToken = { authorization: `Bearer ${svc.registration.hs_token}` };
        await check("GET /health", await fetch(`${svc.url}/health`));
        await check("GET /metrics", await adminApi(org, svc.name as ServiceName).fetch("/metrics"));
        await check("GET /metrics", await fetch(`${svc.url}/metrics`));
        const txn = "PUT /_matrix/app/v1/transactions/{txnId}";
        await check(txn, await putTransaction(svc, "contract-1"));
        await check(txn, await putTransaction(svc, "contract-1", svc.registration.as_token));
        await check(txn, await putTransaction(svc, "contract-1", svc.registration.hs_token));
        const notJson = await fetch(`${svc.url}/_matrix/app/v1/transactions/contract-2`, {
          method: "PUT",
          headers: { ...hsToken, "content-type": "application/json" },
          body: "{not json",
        });
        expect(notJson.status).toBe(400);
        await check(txn, notJson);
        await check(
          "POST /_matrix/app/v1/ping",
          await fetch(`${svc.url}/_matrix/app/v1/ping`, { method: "POST", headers: hsToken }),
        );
        await check(
          "POST /_matrix/app/v1/ping",
          await fetch(`${svc.url}/_matrix/app/v1/ping`, { method: "POST" }),
        );
        const admin = adminApi(org, svc.name as ServiceName);
        const deadLetters = "/_medmesh/admin/v1/appservice/dead-letters";
        await check(`GET ${deadLetters}`, await admin.fetch(deadLetters));
        await check(`GET ${deadLetters}`, await fetch(`${svc.url}${deadLetters}`));
        const unknown = await admin.fetch(`${deadLetters}/%24nothing/retry`, { method: "POST" });
        expect(unknown.status).toBe(404);
        await check(`POST ${deadLetters}/{eventId}/retry`, unknown);
      }
    }
    expect([...exercised].sort()).toEqual(contract.operations().sort());
  });

  it("answer unknown routes with a Matrix error", async () => {
    // Default deny: only an admin learns that a path does not exist.
    expect((await fetch(`${service(1, "policy-module").url}/no/such/route`)).status).toBe(401);
    const res = await adminApi(net().orgs[1]!, "policy-module").fetch("/no/such/route");
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      errcode: "M_UNRECOGNIZED",
      error: "Unrecognized request: GET /no/such/route",
    });
  });

  it("refuse to start with a token Synapse does not know, instead of running half-connected", async () => {
    const org = net().orgs[0]!;
    const dir = await mkdtemp(join(tmpdir(), "medmesh-badtoken-"));
    try {
      const registration = parseYaml(readFileSync(org.paths.bridgeRegistration, "utf8")) as Record<
        string,
        unknown
      >;
      const badRegistration = join(dir, "bridge.yaml");
      writeFileSync(badRegistration, stringify({ ...registration, as_token: "not-the-token-synapse-knows" }));
      const attempt = startBridge(
        {
          ...org.bridge,
          appservice: { registration_file: badRegistration },
          listen: { host: "127.0.0.1", port: 0 },
          ...(org.bridge.interop
            ? { interop: { ...org.bridge.interop, listen: { host: "127.0.0.1", port: 0 } } }
            : {}),
          store: { type: "pglite", data_dir: "memory://" },
        },
        { log: createLogger("bridge", "silent"), pingTimeoutMs: 5000 },
      );
      await expect(attempt).rejects.toThrow(/could not ping itself through .*: 401 .*M_UNKNOWN_TOKEN/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe("admin surfaces: /metrics and admin routes need an admin, /health stays open", () => {
    const org = () => net().orgs[0]!;
    const pmContract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));
    const bridgeContract = new OpenApiContract(join(REPO_ROOT, "bridge", "openapi", "bridge-admin.yaml"));
    const surfaces: [ServiceName, string, OpenApiContract][] = [
      ["policy-module", "/metrics", contract],
      ["policy-module", "/_medmesh/admin/v1/trust", pmContract],
      ["policy-module", "/_medmesh/admin/v1/retention/status", pmContract],
      ["policy-module", "/_medmesh/admin/v1/identity/users/%40nobody%3Aexample.org", pmContract],
      ["bridge", "/metrics", contract],
      ["bridge", "/_medmesh/admin/v1/bridge/inbound/failed", bridgeContract],
      ["bridge", "/_medmesh/admin/v1/bridge/outbound/failed", bridgeContract],
      ["bridge", "/_medmesh/admin/v1/bridge/status", bridgeContract],
    ];
    /** GETs `path` with `token`, checks the answer against the document, returns status and errcode. */
    const call = async (name: ServiceName, path: string, doc: OpenApiContract, token?: string) => {
      const res = await fetch(`${service(0, name).url}${path}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      const op = doc.match("GET", path);
      if (!op) throw new Error(`GET ${path} is not in its OpenAPI document`);
      await doc.check(op, res.clone());
      const body = (await res.json().catch(() => ({}))) as { errcode?: string };
      return { status: res.status, errcode: body.errcode };
    };

    it("refuse a missing or wrong token with 401 on both services; /health needs none", async () => {
      for (const [name, path, doc] of surfaces) {
        expect(await call(name, path, doc), `${name} ${path}`).toEqual({
          status: 401,
          errcode: "M_MISSING_TOKEN",
        });
        expect(await call(name, path, doc, "not-the-admin-token"), `${name} ${path}`).toEqual({
          status: 401,
          errcode: "M_UNKNOWN_TOKEN",
        });
        // Another service's admin token is a wrong token here.
        const other = name === "bridge" ? "policy-module" : "bridge";
        expect((await call(name, path, doc, adminApi(org(), other).token)).status).toBe(401);
        expect((await fetch(`${service(0, name).url}/health`)).status).toBe(200);
      }
    });

    it("accept the service's admin token file and an organisation admin's Matrix token; a user's is 403", async () => {
      const admin = await registerWithSharedSecret(org().synapseUrl, org().registrationSecret, {
        localpart: "ops-admin",
        password: "ops-admin-password-1",
        admin: true,
      });
      const user = await net().registerUser(org());
      for (const [name, path, doc] of surfaces) {
        expect((await call(name, path, doc, adminApi(org(), name).token)).status, `${name} ${path}`).toBe(
          200,
        );
        expect((await call(name, path, doc, admin.accessToken)).status, `${name} ${path}`).toBe(200);
        expect(await call(name, path, doc, user.accessToken), `${name} ${path}`).toEqual({
          status: 403,
          errcode: "M_FORBIDDEN",
        });
      }
      // The appservice's own token is no admin's either.
      expect(
        (await call("bridge", "/metrics", contract, service(0, "bridge").registration.as_token)).status,
      ).toBe(403);
    });

    it("serve the bridge's interop API on its public listener only, and nothing else there", async () => {
      const bridge = service(0, "bridge");
      const interopUrl = bridge.endpoints.interop ?? "";
      expect(interopUrl).toBe(org().bridgeInteropUrl);
      const token = adminApi(org(), "bridge").token;
      for (const path of [
        "/health",
        "/metrics",
        "/_medmesh/admin/v1/bridge/inbound/failed",
        "/_matrix/app/v1/ping",
      ]) {
        const res = await fetch(`${interopUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
        expect(res.status, path).toBe(404);
        expect(await res.json()).toMatchObject({ errcode: "M_UNRECOGNIZED" });
      }
      const unsigned = (base: string) =>
        fetch(`${base}/_medmesh/interop/v1/events`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ type: "message" }),
        });
      // Public: the interop API answers (and refuses the unsigned request); internal: not served.
      expect((await unsigned(interopUrl)).status).toBe(401);
      const internal = await unsigned(bridge.url);
      expect(internal.status).toBe(404);
      expect(await internal.json()).toMatchObject({ errcode: "M_UNRECOGNIZED" });
    });

    it("start a policy module only with a trust list or an explicit open_federation: true", async () => {
      const o = net().orgs[1]!;
      const { trust: _trust, ...withoutTrust } = o.policyModule;
      const proxy = o.policyModule.proxy!;
      const standalone = {
        listen: { host: "127.0.0.1", port: 0 },
        store: { type: "pglite" as const, data_dir: "memory://" },
        proxy: {
          ...proxy,
          client: { host: "127.0.0.1", port: 0 },
          federation: { ...proxy.federation, port: 0 },
        },
      };
      const log = createLogger("policy-module", "silent");
      await expect(startPolicyModule({ ...withoutTrust, ...standalone }, { log })).rejects.toThrow(
        /no trust list configured[\s\S]*trust: \{ open_federation: true \}/,
      );
      const open = await startPolicyModule(
        {
          ...withoutTrust,
          ...standalone,
          trust: { open_federation: true, operator_keys: [], lists: [], refresh_seconds: 300 },
        },
        { log, pingTimeoutMs: 10_000 },
      );
      try {
        const res = await fetch(`${open.url}/_medmesh/admin/v1/trust`, {
          headers: { authorization: `Bearer ${adminApi(o, "policy-module").token}` },
        });
        expect(await res.json()).toEqual({ configured: false });
      } finally {
        await open.stop();
      }
    });
  });

  it("turn unhealthy (503, naming the failed check) when their homeserver is down", async () => {
    const org = net().orgs[1]!;
    await org.synapse.stop();
    const res = await fetch(`${service(1, "bridge").url}/health`);
    expect(res.status).toBe(503);
    await contract.check("GET /health", res.clone());
    const body = (await res.json()) as { status: string; checks: Record<string, string> };
    expect(body.status).toBe("unhealthy");
    expect(body.checks.store).toBe("ok");
    expect(body.checks.homeserver).not.toBe("ok");
  });
});
