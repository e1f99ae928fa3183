import { get as httpGet } from "node:http";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../logging.ts";
import {
  adminAuthenticator,
  cachedTokenLookup,
  type MatrixTokenInfo,
  type MatrixTokenLookup,
} from "./auth.ts";
import { ApiError } from "./errors.ts";
import { createListenerApp, createServiceApp, listen, type RunningServer } from "./service.ts";

const ADMIN_TOKEN = "a".repeat(43);
// Synapse's answers, by token; the real whoami/admin API path is covered by tests/e2e/services.test.ts.
const matrixTokens: Record<string, MatrixTokenInfo> = {
  "org-admin": { valid: true, userId: "@root:hospital.example", serverAdmin: true },
  "org-user": { valid: true, userId: "@alice:hospital.example", serverAdmin: false },
  "foreign-admin": { valid: true, userId: "@root:elsewhere.example", serverAdmin: true },
};
let synapseDown = false;
const lookup: MatrixTokenLookup = (token) =>
  synapseDown
    ? Promise.reject(new Error("connection refused"))
    : Promise.resolve(matrixTokens[token] ?? { valid: false });

describe("internal listener: admin by default, route groups authenticate themselves", () => {
  let internal: RunningServer;
  let pub: RunningServer;
  beforeAll(async () => {
    const log = createLogger("test", "silent");
    const app = createServiceApp(
      {
        name: "svc",
        log,
        metrics: new Registry(),
        healthChecks: {},
        admin: adminAuthenticator({ token: ADMIN_TOKEN, matrix: lookup, serverName: "hospital.example" }),
        routeGroups: [
          {
            prefix: "/_own/",
            authenticate: (req) =>
              req.get("x-own") === "yes"
                ? Promise.resolve()
                : Promise.reject(new ApiError("M_FORBIDDEN", "not ours")),
            description: "a group with its own credential",
          },
        ],
      },
      (a) => {
        a.get("/_medmesh/admin/v1/thing", (_req, res) => {
          res.json({ ok: true });
        });
        a.get("/_own/v1/thing", (_req, res) => {
          res.json({ own: true });
        });
      },
    );
    internal = await listen(app, "127.0.0.1", 0);
    const publicApp = createListenerApp(
      { log, routeGroups: [{ prefix: "/_pub/", authenticate: "in-handlers", description: "signed" }] },
      (a) => {
        a.get("/_pub/v1/thing", (_req, res) => {
          res.json({ pub: true });
        });
      },
    );
    pub = await listen(publicApp, "127.0.0.1", 0);
  });
  afterAll(async () => {
    await internal.close();
    await pub.close();
  });

  const get = async (base: string, path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, { headers });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  // fetch resolves dot segments before sending; node:http sends the path as written.
  const rawStatus = (base: string, path: string, headers: Record<string, string>) =>
    new Promise<number | undefined>((resolve, reject) => {
      const { hostname, port } = new URL(base);
      httpGet({ hostname, port, path, headers }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on("error", reject);
    });

  it("keeps /health open and closes /metrics, admin routes and unknown paths to the anonymous", async () => {
    expect((await get(internal.url, "/health")).status).toBe(200);
    for (const path of ["/metrics", "/_medmesh/admin/v1/thing", "/no/such/route"]) {
      expect(await get(internal.url, path)).toMatchObject({
        status: 401,
        body: { errcode: "M_MISSING_TOKEN" },
      });
    }
    expect((await get(internal.url, "/metrics", { authorization: "Basic abc" })).status).toBe(401);
  });

  it("accepts the admin token and an organisation admin's Matrix token; refuses the rest", async () => {
    expect(await get(internal.url, "/_medmesh/admin/v1/thing", bearer(ADMIN_TOKEN))).toEqual({
      status: 200,
      body: { ok: true },
    });
    expect((await get(internal.url, "/metrics", bearer("org-admin"))).status).toBe(200);
    expect(await get(internal.url, "/metrics", bearer(`${ADMIN_TOKEN}x`))).toMatchObject({
      status: 401,
      body: { errcode: "M_UNKNOWN_TOKEN" },
    });
    for (const token of ["org-user", "foreign-admin"])
      expect(await get(internal.url, "/_medmesh/admin/v1/thing", bearer(token))).toMatchObject({
        status: 403,
        body: { errcode: "M_FORBIDDEN" },
      });
    // An authenticated admin learns that a path does not exist; nobody else does.
    expect(await get(internal.url, "/no/such/route", bearer(ADMIN_TOKEN))).toMatchObject({
      status: 404,
      body: { errcode: "M_UNRECOGNIZED" },
    });
  });

  it("fails closed when Synapse cannot be asked", async () => {
    synapseDown = true;
    try {
      expect(await get(internal.url, "/metrics", bearer("org-admin"))).toMatchObject({
        status: 503,
        body: { errcode: "M_UNAVAILABLE" },
      });
      // The admin token needs no Synapse.
      expect((await get(internal.url, "/metrics", bearer(ADMIN_TOKEN))).status).toBe(200);
    } finally {
      synapseDown = false;
    }
  });

  it("lets a route group use its own credential instead of the admin's, and only there", async () => {
    expect(await get(internal.url, "/_own/v1/thing", { "x-own": "yes" })).toEqual({
      status: 200,
      body: { own: true },
    });
    expect((await get(internal.url, "/_own/v1/thing", bearer(ADMIN_TOKEN))).status).toBe(403);
    expect((await get(internal.url, "/_medmesh/admin/v1/thing", { "x-own": "yes" })).status).toBe(401);
    // Paths are matched exactly: neither case nor dot segments move a request into a group.
    expect((await get(internal.url, "/_OWN/v1/thing", { "x-own": "yes" })).status).toBe(401);
    expect(await rawStatus(internal.url, "/_own/../_medmesh/admin/v1/thing", { "x-own": "yes" })).toBe(401);
  });

  it("serves only its route groups on a public listener", async () => {
    expect(await get(pub.url, "/_pub/v1/thing")).toEqual({ status: 200, body: { pub: true } });
    for (const path of ["/health", "/metrics", "/_medmesh/admin/v1/thing"])
      expect(await get(pub.url, path, bearer(ADMIN_TOKEN))).toMatchObject({
        status: 404,
        body: { errcode: "M_UNRECOGNIZED" },
      });
  });
});

describe("cachedTokenLookup", () => {
  it("asks Synapse once per token while the answer is fresh, and again after", async () => {
    let now = 0;
    const asked: string[] = [];
    const cached = cachedTokenLookup(
      (t) => {
        asked.push(t);
        return Promise.resolve({ valid: false });
      },
      { ttlMs: 1000, maxEntries: 2, now: () => now },
    );
    await cached("a");
    await cached("a");
    expect(asked).toEqual(["a"]);
    now = 1001;
    await cached("a");
    expect(asked).toEqual(["a", "a"]);
    // Bounded: the oldest entry goes first.
    await cached("b");
    await cached("c");
    await cached("a");
    expect(asked).toEqual(["a", "a", "b", "c", "a"]);
  });

  it("keeps no failure", async () => {
    let fail = true;
    const cached = cachedTokenLookup(
      () => (fail ? Promise.reject(new Error("down")) : Promise.resolve({ valid: false })),
      { ttlMs: 60_000 },
    );
    await expect(cached("t")).rejects.toThrow("down");
    fail = false;
    expect(await cached("t")).toEqual({ valid: false });
  });
});
