import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { IncomingMessage } from "node:http";
import { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { clientRules } from "./client-rules.ts";
import { timClientRules } from "./tim-rules.ts";
import { ProxyConfigSchema } from "./config.ts";
import { ProxyContext, Refusal } from "./context.ts";
import {
  compileEndpoints,
  endpointGuard,
  ENDPOINTS,
  endpointsFor,
  listenerOf,
  templateRegExp,
  templateSamples,
  UNKNOWN_ENDPOINT_LOG,
} from "./endpoints.ts";
import { runProxyCli } from "./endpoints-cli.ts";
import { UNAUTHENTICATED } from "./federation-rules.ts";
import { findRoute } from "./router.ts";

const here = dirname(fileURLToPath(import.meta.url));
const python = resolve(here, "../../../deploy/.venv/bin/python");

interface SynapseRoute {
  resource: "client" | "media" | "federation" | "key";
  method: string;
  pattern: string;
  servlet: string;
  samples: string[];
}

/** What the installed Synapse routes, from its own servlet classes (synapse-routes.py). */
function synapseRoutes(extraConfig: Record<string, unknown> = {}): {
  synapse: string;
  routes: SynapseRoute[];
} {
  const out = execFileSync(python, [join(here, "synapse-routes.py"), JSON.stringify(extraConfig)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(out) as { synapse: string; routes: SynapseRoute[] };
}

// Synapse mounts the media repository on both listeners, everything else on one.
const LISTENERS = {
  client: ["client"],
  media: ["client", "federation"],
  federation: ["federation"],
  key: ["federation"],
} as const;

// Python regexes as JavaScript ones: named groups are spelled differently; Synapse matches from
// the start of the path (re.match).
const jsRegExp = (p: string): RegExp => new RegExp(p.replace(/\(\?P</g, "(?<").replace(/^\^?/, "^"));

const table = compileEndpoints();

// What the generator writes for an organisation with single sign-on (deploy/src/synapse/oidc-config.ts).
const WITH_SSO = {
  oidc_providers: [
    {
      idp_id: "hospital-a",
      idp_name: "Hospital A",
      issuer: "https://login.hospital-a.example/",
      client_id: "medmesh-synapse",
      client_secret: "unused",
      pkce_method: "always",
    },
  ],
  password_config: { enabled: false },
};

describe.skipIf(!existsSync(python)).each([
  { setup: "without single sign-on", sso: false, extra: {} },
  { setup: "with single sign-on (OIDC)", sso: true, extra: WITH_SSO },
])("the endpoint table against Synapse's own routes, $setup", ({ sso, extra }) => {
  const { synapse, routes } = synapseRoutes(extra);
  const compiled = routes.map((r) => ({ ...r, regexp: jsRegExp(r.pattern) }));
  const entries = endpointsFor({ sso });
  const featured = compileEndpoints(ENDPOINTS, { sso });

  it("is checked against the pinned Synapse", () => {
    expect(synapse).toMatch(/^1\.163\.2\b/);
    // Enough routes that the enumeration clearly worked (each family present).
    for (const family of ["client", "media", "federation", "key"]) {
      expect(routes.filter((r) => r.resource === family).length).toBeGreaterThan(0);
    }
    expect(routes.length).toBeGreaterThan(150);
  });

  it("has no dead entries: every allowed method and path form is a Synapse route", () => {
    const dead: string[] = [];
    for (const e of entries) {
      if (!("rule" in e.guard) || e.served !== "servlet") continue;
      for (const method of e.methods) {
        for (const sample of templateSamples(e.path)) {
          const hit = compiled.some(
            (r) =>
              r.method === method &&
              (LISTENERS[r.resource] as readonly string[]).includes(listenerOf(e)) &&
              r.regexp.test(sample),
          );
          if (!hit) dead.push(`${method} ${sample} (${e.path})`);
        }
      }
    }
    expect(dead).toEqual([]);
  });

  it("classifies every Synapse route: each is allowed or refused on purpose", () => {
    const unclassified: string[] = [];
    for (const r of routes) {
      for (const listener of LISTENERS[r.resource]) {
        for (const sample of r.samples) {
          const found = featured.lookup(listener, r.method, sample);
          if (!found || found.wrongMethod) {
            unclassified.push(`${listener}: ${r.method} ${sample} (${r.servlet} ${r.pattern})`);
          }
        }
      }
    }
    expect(unclassified).toEqual([]);
  });
});

describe("endpoint lookup", () => {
  const verdict = (listener: "client" | "federation", method: string, path: string): string => {
    const found = table.lookup(listener, method, path);
    if (!found) return "unknown";
    if (found.wrongMethod) return "wrong method";
    return "deny" in found.entry.guard ? "deny" : `allow:${found.entry.guard.rule}`;
  };

  it("resolves concrete requests across versions and listeners", () => {
    const cases: [listener: "client" | "federation", method: string, path: string, expected: string][] = [
      ["client", "GET", "/_matrix/client/versions", "allow:none"],
      ["client", "GET", "/_matrix/client/r0/sync", "allow:none"],
      ["client", "GET", "/_matrix/client/v3/sync", "allow:none"],
      ["client", "POST", "/_matrix/client/v3/createRoom", "allow:create-room"],
      ["client", "POST", "/_matrix/client/r0/createRoom", "allow:create-room"],
      ["client", "PUT", "/_matrix/client/v3/createRoom/txn1", "deny"],
      ["client", "POST", "/_matrix/client/unstable/rooms/!a%3Ab.example/invite", "allow:invite"],
      ["client", "PUT", "/_matrix/client/v3/rooms/!a%3Ab/invite/txn1", "deny"],
      ["client", "PUT", "/_matrix/client/v3/rooms/!a%3Ab/send/m.room.message/t1", "allow:none"],
      ["client", "POST", "/_matrix/client/v3/join/%23room%3Ab.example", "allow:join"],
      ["client", "GET", "/_matrix/client/v3/pushrules/", "allow:none"],
      ["client", "PUT", "/_matrix/client/v3/rooms/!a%3Ab/state/m.room.name/", "allow:none"],
      ["client", "GET", "/_matrix/client/v3/rooms/!a%3Ab/state/m.room.encryption/", "allow:none"],
      ["client", "PUT", "/_matrix/client/v3/rooms/!a%3Ab/send/m.room.message/", "unknown"],
      ["client", "GET", "/_matrix/client/v3/room_keys/keys/!r%3Ab/s1", "allow:none"],
      ["client", "GET", "/_matrix/client/v1/rooms/!r%3Ab/relations/%24e/m.thread", "allow:none"],
      ["client", "GET", "/_matrix/client/v3/profile/%40u%3Ab/displayname", "allow:profile"],
      ["client", "PUT", "/_matrix/client/v3/profile/%40u%3Ab/org.medmesh.verified", "deny"],
      ["client", "POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "allow:none"],
      ["client", "POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1/send", "allow:none"],
      ["client", "GET", "/_matrix/client/v1/media/download/b.example/abc", "allow:none"],
      ["client", "POST", "/_matrix/media/v3/upload", "allow:media-strip"],
      ["client", "GET", "/_matrix/media/v3/download/b.example/abc", "deny"],
      ["client", "GET", "/_matrix/client/v1/media/preview_url", "deny"],
      ["client", "POST", "/_matrix/client/v3/account/3pid/add", "deny"],
      ["client", "GET", "/_synapse/admin/v1/users", "deny"],
      ["client", "GET", "/_matrix/client/api/v1/initialSync", "deny"],
      ["client", "DELETE", "/_matrix/client/v3/sync", "wrong method"],
      ["client", "OPTIONS", "/_matrix/client/v3/sync", "allow:none"],
      ["client", "GET", "/_matrix/client/v3/nonsense", "unknown"],
      ["client", "GET", "/_matrix/federation/v1/version", "unknown"],
      ["client", "GET", "/_medmesh/identity/v1/verification", "allow:medmesh-api"],
      ["federation", "PUT", "/_matrix/federation/v1/invite/!r%3Ab/%24e", "allow:federation-invite"],
      ["federation", "PUT", "/_matrix/federation/v2/invite/!r%3Ab/%24e", "allow:federation-invite"],
      ["federation", "PUT", "/_matrix/federation/v1/send/1234", "allow:none"],
      ["federation", "PUT", "/_matrix/federation/v1/send/1234/", "allow:none"],
      ["federation", "GET", "/_matrix/federation/v1/make_join/!r%3Ab/%40u%3Ac", "allow:none"],
      ["federation", "PUT", "/_matrix/federation/v2/send_join/!r%3Ab/%24e", "allow:none"],
      ["federation", "GET", "/_matrix/federation/v1/send/1234", "wrong method"],
      ["federation", "GET", "/_matrix/key/v2/server", "allow:unsigned-federation"],
      ["federation", "GET", "/_matrix/federation/v1/version", "allow:unsigned-federation"],
      ["federation", "GET", "/_matrix/media/v3/download/b/abc", "deny"],
      ["federation", "GET", "/_matrix/client/v3/sync", "unknown"],
      ["federation", "GET", "/_medmesh/fhir/r4/Practitioner", "allow:medmesh-api"],
    ];
    expect(cases.map(([l, m, p]) => [l, m, p, verdict(l, m, p)])).toEqual(cases);
  });

  it("opens Synapse's single sign-on pages exactly where single sign-on is configured", () => {
    const sso = compileEndpoints(ENDPOINTS, { sso: true });
    const at = (t: typeof table, method: string, path: string): string => {
      const found = t.lookup("client", method, path);
      if (!found) return "unknown";
      return "deny" in found.entry.guard ? "deny" : `allow:${found.entry.guard.rule}`;
    };
    const cases: [method: string, path: string, without: string, withSso: string][] = [
      ["GET", "/_matrix/client/v3/login/sso/redirect/oidc-hospital-a", "deny", "allow:none"],
      ["GET", "/_matrix/client/r0/login/sso/redirect", "deny", "allow:none"],
      ["GET", "/_matrix/client/v3/login/cas/redirect", "deny", "deny"],
      ["GET", "/_synapse/client/oidc/callback", "deny", "allow:none"],
      ["POST", "/_synapse/client/oidc/callback", "deny", "allow:none"],
      ["GET", "/_synapse/client/pick_idp", "deny", "allow:none"],
      ["GET", "/_synapse/client/pick_username/account_details", "deny", "allow:none"],
      ["POST", "/_synapse/client/pick_username/account_details", "deny", "allow:none"],
      ["GET", "/_synapse/client/pick_username/check", "deny", "allow:none"],
      ["GET", "/_synapse/client/sso_register", "deny", "allow:none"],
      ["GET", "/_synapse/client/new_user_consent", "deny", "deny"],
      ["GET", "/_synapse/client/unsubscribe", "deny", "deny"],
      ["POST", "/_synapse/client/oidc/backchannel_logout", "deny", "unknown"],
      ["GET", "/_synapse/admin/v1/users", "deny", "deny"],
      ["POST", "/_matrix/client/v3/login", "allow:none", "allow:none"],
    ];
    expect(cases.map(([m, p]) => [m, p, at(table, m, p), at(sso, m, p)])).toEqual(cases);
  });

  it("names the same rule the proxy's client rules apply", () => {
    // A client rule route hit by an entry the table calls rule-free would be a silent mismatch.
    const rules = [
      // With an ePA profile, where every TI-M client rule is on.
      ...timClientRules({
        profile: "tim-epa",
        supportPage: "https://matrix.a.example/help",
        insured: () => false,
        directory: { search: () => Promise.resolve(undefined), profile: () => Promise.resolve(undefined) },
        upstream: new URL("http://127.0.0.1:1"),
        jsonLimit: 1024,
      }),
      ...clientRules({
        config: ProxyConfigSchema.parse({
          client: { port: 0 },
          federation: {
            port: 0,
            upstream: "http://127.0.0.1:1",
            tls: { certificate: "c", private_key: "k" },
          },
        }),
        serverName: "a.example",
        trust: { isTrusted: () => true },
        invites: { check: () => Promise.resolve({ allowed: true }), changed: () => undefined },
        directory: { search: () => Promise.resolve(undefined), profile: () => Promise.resolve(undefined) },
        onStripped: () => undefined,
      }),
    ];
    const mismatched: string[] = [];
    for (const e of ENDPOINTS) {
      if (listenerOf(e) !== "client" || !("rule" in e.guard)) continue;
      for (const method of e.methods) {
        for (const sample of templateSamples(e.path)) {
          const ruled = findRoute(rules, method, sample) !== undefined;
          if (ruled !== !["none", "medmesh-api"].includes(e.guard.rule)) {
            mismatched.push(`${method} ${sample}: table says ${e.guard.rule}, client rules ${String(ruled)}`);
          }
        }
      }
    }
    expect(mismatched).toEqual([]);
  });

  it("lets exactly the unsigned-federation entries through without a signature", () => {
    const mismatched: string[] = [];
    for (const e of ENDPOINTS) {
      if (listenerOf(e) !== "federation" || !("rule" in e.guard)) continue;
      for (const sample of templateSamples(e.path)) {
        if (UNAUTHENTICATED.test(sample) !== (e.guard.rule === "unsigned-federation")) {
          mismatched.push(`${sample}: table says ${e.guard.rule}`);
        }
      }
    }
    expect(mismatched).toEqual([]);
  });

  it("expands templates into regular expressions and samples", () => {
    const t = "/a/(b|c)/{id}[/{rest...}]";
    expect(templateSamples(t).sort()).toEqual(["/a/b/x", "/a/b/x/x", "/a/c/x", "/a/c/x/x"]);
    expect(templateSamples("/s/{key?}")).toEqual(["/s/x", "/s/"]);
    expect(templateRegExp("/s/{key?}").test("/s/")).toBe(true);
    expect(templateRegExp("/s/{key}").test("/s/")).toBe(false);
    expect(templateRegExp(t).test("/a/c/%21x%3Ay/p/q")).toBe(true);
    expect(templateRegExp(t).test("/a/d/x")).toBe(false);
    expect(templateRegExp("/v1.x").test("/v1yx")).toBe(false);
  });
});

describe("the endpoint guard", () => {
  const setup = () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({}, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
    const guard = endpointGuard(log);
    const admit = (listener: "client" | "federation", method: string, target: string): Refusal | string => {
      const req = Object.assign(new IncomingMessage(new Socket()), { method, url: target });
      const ctx = new ProxyContext(
        req,
        new URL(target, "http://x.invalid"),
        listener,
        () => Promise.resolve(undefined),
        { bodyIdleMs: 1000 },
      );
      try {
        return guard.admit(ctx).path;
      } catch (err) {
        if (err instanceof Refusal) return err;
        throw err;
      }
    };
    return { lines, admit };
  };

  it("refuses unknown endpoints with 404, known paths with another method with 405, and logs both", () => {
    const { lines, admit } = setup();
    const unknown = admit("client", "GET", "/_matrix/client/v3/nonsense?access_token=secret");
    expect(unknown).toMatchObject({ status: 404, errcode: "M_UNRECOGNIZED" });
    expect(admit("federation", "GET", "/_matrix/federation/v1/send/1")).toMatchObject({ status: 405 });
    expect(lines.map((l) => [l.level, l.msg, l.method, l.path])).toEqual([
      [40, UNKNOWN_ENDPOINT_LOG, "GET", "/_matrix/client/v3/nonsense"],
      [40, UNKNOWN_ENDPOINT_LOG, "GET", "/_matrix/federation/v1/send/1"],
    ]);
    expect(JSON.stringify(lines)).not.toContain("secret");
  });

  it("answers deny entries with their own error, without a warning, and admits the rest", () => {
    const { lines, admit } = setup();
    expect(admit("client", "GET", "/_matrix/client/v1/media/preview_url?url=x")).toMatchObject({
      status: 403,
      errcode: "M_FORBIDDEN",
    });
    expect(admit("client", "GET", "/_synapse/admin/v1/users")).toMatchObject({ status: 404 });
    expect(admit("client", "PUT", "/_matrix/client/v3/rooms/!r%3Ab/send/m.room.message/t1")).toBe(
      "/_matrix/client/(r0|v3|unstable)/rooms/{roomId}/(send|redact)/{eventTypeOrId}/{txnId}",
    );
    expect(lines).toEqual([]);
  });
});

describe("medmesh proxy endpoints", () => {
  const run = (argv: string[]): { code: number; out: string } => {
    let out = "";
    const code = runProxyCli(argv, { stdout: (s) => (out += s), stderr: (s) => (out += s) });
    return { code, out };
  };

  it("prints the table as text columns and as JSON", () => {
    const text = run(["endpoints"]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^LISTENER\s+FAMILY\s+METHODS\s+VERDICT\s+PATH/);
    expect(text.out).toContain("allow:create-room");
    const json = run(["endpoints", "--json"]);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.out) as { path: string; verdict: string }[];
    expect(rows).toHaveLength(ENDPOINTS.length);
    expect(rows.find((r) => r.path === "/_synapse/admin/{rest...}")?.verdict).toBe("deny");
    expect(run(["nonsense"]).code).toBe(2);
  });
});

describe("endpoints with a TI-Messenger profile", () => {
  const verdict = (tim: boolean, method: string, path: string): string => {
    const found = compileEndpoints(undefined, { sso: false, tim }).lookup("client", method, path);
    if (!found) return "unknown";
    if (found.wrongMethod) return "405";
    const g = found.entry.guard;
    return "deny" in g ? `deny ${String(g.status ?? 404)}` : `allow ${g.rule}`;
  };
  it("opens the legacy media download, answers 404 for link previews and serves the support file", () => {
    const download = "/_matrix/media/v3/download/a.example/abc";
    expect(verdict(false, "GET", download)).toBe("deny 404");
    expect(verdict(true, "GET", download)).toBe("allow none");
    expect(verdict(true, "GET", "/_matrix/media/r0/download/a.example/abc")).toBe("deny 404");
    expect(verdict(true, "GET", "/_matrix/media/v3/thumbnail/a.example/abc")).toBe("deny 404");
    for (const p of ["/_matrix/media/v3/preview_url", "/_matrix/client/v1/media/preview_url"]) {
      expect(verdict(false, "GET", p)).toBe("deny 403");
      expect(verdict(true, "GET", p)).toBe("deny 404");
    }
    expect(verdict(false, "GET", "/.well-known/matrix/support")).toBe("unknown");
    expect(verdict(true, "GET", "/.well-known/matrix/support")).toBe("allow tim-support");
    expect(verdict(true, "DELETE", "/.well-known/matrix/support")).toBe("deny 405");
  });
});
