import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { connect as connectTls } from "node:tls";
import { describe, expect, it } from "vitest";
import { adminApi, useTestNetwork } from "../harness/index.ts";

// Short edge timeouts for organisation A, so slow senders are seen being cut off in seconds.
const HEADERS_TIMEOUT_MS = 2000;
const BODY_IDLE_TIMEOUT_MS = 2000;
/** Node checks the headers timeout once a second at most; plus a loaded machine's scheduling. */
const MARGIN_MS = 1500;

const net = useTestNetwork({
  name: "proxy-hostile",
  organisations: 2,
  // Junk paths on purpose: the unknown-endpoint refusals they cause are expected.
  allowUnknownEndpoints: true,
  organisationSettings: {
    0: {
      proxy_limits: {
        headers_timeout_ms: HEADERS_TIMEOUT_MS,
        body_idle_timeout_ms: BODY_IDLE_TIMEOUT_MS,
      },
    },
  },
});

const TOTAL = 10_000;
const CONCURRENCY = 32;
const MARK = "medmesh-hostile";

interface Hostile {
  kind: string;
  send(): Promise<number>;
}

describe("the proxy under 10,000 malformed and hostile requests", () => {
  it("never crashes, never answers 5xx, and Synapse never sees a refused request", async () => {
    const [a, b] = net().orgs;
    const user = await net().registerUser(a!);
    const client = new URL(a!.clientUrl);
    const federation = new URL(a!.federationUrl);
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const tlsAgent = new HttpsAgent({ keepAlive: true, maxSockets: CONCURRENCY, rejectUnauthorized: false });

    const http = (
      method: string,
      path: string,
      headers: Record<string, string>,
      body?: Buffer | string,
    ): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpRequest(
          { host: client.hostname, port: client.port, method, path, headers, agent },
          (res) => {
            res.resume();
            res.on("end", () => {
              resolve(res.statusCode ?? 0);
            });
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    const fed = (path: string, authorization?: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: federation.hostname,
            port: federation.port,
            path,
            agent: tlsAgent,
            headers: authorization ? { authorization } : {},
          },
          (res) => {
            res.resume();
            res.on("end", () => {
              resolve(res.statusCode ?? 0);
            });
          },
        );
        req.on("error", reject);
        req.end();
      });
    /** Bytes on a fresh socket, for what an HTTP library would not send: the status of the answer. */
    const raw = (text: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(client.port), client.hostname, () => socket.end(text));
        let answer = "";
        socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
        socket.on("close", () => {
          resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0));
        });
        socket.on("error", reject);
      });
    const auth = { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" };

    const hostile = (i: number): Hostile => {
      const mark = `${MARK}-${String(i)}`;
      switch (i % 10) {
        case 0:
          return {
            kind: "broken JSON",
            send: () => http("POST", `/_matrix/client/v3/createRoom?${mark}`, auth, '{"name": "x", '),
          };
        case 1:
          return {
            kind: "JSON that is not an object",
            send: () => http("POST", `/_matrix/client/v3/rooms/!x:y/invite?${mark}`, auth, "[1,2,3]"),
          };
        case 2:
          return i % 100 === 2
            ? {
                kind: "oversized body, streamed",
                send: () =>
                  http(
                    "POST",
                    `/_matrix/client/v3/createRoom?${mark}`,
                    { ...auth, "transfer-encoding": "chunked" },
                    randomBytes(1_200_000),
                  ),
              }
            : {
                kind: "oversized body, declared",
                send: () =>
                  raw(
                    `POST /_matrix/client/v3/createRoom?${mark} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.accessToken}\r\nContent-Length: 900000000\r\n\r\n{`,
                  ),
              };
        case 3:
          return {
            kind: "huge header",
            send: () =>
              http("GET", `/_matrix/client/v3/sync?${mark}`, { ...auth, "x-junk": "a".repeat(40_000) }),
          };
        case 4: {
          const tricks = [
            `/_matrix/client/v3/../../_synapse/admin/v1/users?${mark}`,
            `/_matrix/client/v3/rooms/%2e%2e/invite?${mark}`,
            `/_matrix/client/v3//createRoom?${mark}`,
            `/_matrix/client/v3/createRoom%00?${mark}`,
            `/_matrix/client/v3/rooms/%2F%2F/join?${mark}`,
            `/_matrix/client/v3/profile/%E0%A4%A?${mark}`,
            `/_synapse/admin/v1/users?${mark}`,
          ];
          const path = tricks[i % tricks.length]!;
          return { kind: "path trick", send: () => http("POST", path, auth, "{}") };
        }
        case 5:
          return {
            kind: "bad token",
            send: () =>
              http("GET", `/_matrix/client/v3/account/whoami?${mark}`, {
                authorization: `Bearer ${randomBytes(16).toString("hex")}`,
              }),
          };
        case 6:
          return {
            kind: "absolute-form target",
            send: () => raw(`GET http://169.254.169.254/${mark} HTTP/1.1\r\nHost: x\r\n\r\n`),
          };
        case 7:
          return {
            kind: "federation without signature",
            send: () => fed(`/_matrix/federation/v1/query/profile?${mark}`),
          };
        case 8:
          return {
            kind: "federation from an untrusted origin",
            send: () =>
              fed(
                `/_matrix/federation/v1/send/${mark}`,
                `X-Matrix origin="evil.example",key="ed25519:x",sig="AAAA"`,
              ),
          };
        default:
          return {
            kind: "federation addressed elsewhere",
            send: () =>
              fed(
                `/_matrix/federation/v1/send/${mark}`,
                `X-Matrix origin="${b!.serverName}",destination="other.example",key="ed25519:x",sig="AAAA"`,
              ),
          };
      }
    };

    const statuses = new Map<string, Map<number, number>>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < TOTAL) {
        const h = hostile(next++);
        const status = await h.send().catch(() => -1); // -1: connection closed without an answer
        const byStatus = statuses.get(h.kind) ?? new Map<number, number>();
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
        statuses.set(h.kind, byStatus);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    agent.destroy();
    tlsAgent.destroy();

    const summary = Object.fromEntries([...statuses].map(([k, m]) => [k, Object.fromEntries(m)]));
    console.log("hostile requests by kind and status:", JSON.stringify(summary));
    const all = [...statuses.values()].flatMap((m) => [...m]);
    expect(all.reduce((n, [, c]) => n + c, 0)).toBe(TOTAL);
    // Every one refused with a 4xx: no crash, no 5xx, no dropped connection.
    expect(all.filter(([s]) => s < 400 || s >= 500)).toEqual([]);

    // Still serving, and Synapse saw none of them.
    const ok = await fetch(`${a!.clientUrl}/_matrix/client/v3/account/whoami`, {
      headers: { authorization: `Bearer ${user.accessToken}` },
    });
    expect(ok.status).toBe(200);
    const synapseLog = readFileSync(a!.paths.logFile, "utf8");
    expect(synapseLog.includes(MARK)).toBe(false);
    const metrics = await adminApi(a!, "policy-module").metrics();
    const refused = [...metrics.matchAll(/^medmesh_proxy_refusals_total\{[^}]*\} (\d+)/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
    // Huge headers (431) and absolute-form targets (400) are refused before the policy rules run.
    expect(refused).toBeGreaterThanOrEqual(TOTAL * 0.8 - 1);
  });
});

interface Timed {
  status: number;
  errcode: unknown;
  ms: number;
}

/**
 * Bytes exactly as given (latin1) on a fresh connection to the client or federation port, then
 * `rest` one part every `gapMs`; the answer's status and errcode, and how long the proxy took to
 * answer and close. The connection is left open by the sender: the proxy must close it.
 */
function timedRaw(url: string, head: string, rest: string[] = [], gapMs = 250): Promise<Timed> {
  const target = new URL(url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tls = target.protocol === "https:";
    const socket = tls
      ? connectTls({ port: Number(target.port), host: target.hostname, rejectUnauthorized: false })
      : connect(Number(target.port), target.hostname);
    socket.once(tls ? "secureConnect" : "connect", () => {
      socket.write(Buffer.from(head, "latin1"));
      const timer = setInterval(() => {
        const part = rest.shift();
        if (part === undefined || socket.destroyed) clearInterval(timer);
        else socket.write(Buffer.from(part, "latin1"));
      }, gapMs);
      socket.once("close", () => {
        clearInterval(timer);
      });
    });
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    socket.on("error", reject);
    // A connection still open after 30 s counts as held: the test's timeouts are a few seconds.
    const giveUp = setTimeout(() => socket.destroy(), 30_000);
    socket.on("close", () => {
      clearTimeout(giveUp);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
      let errcode: unknown;
      try {
        errcode = (JSON.parse(answer.split("\r\n\r\n")[1] ?? "") as { errcode?: unknown }).errcode;
      } catch {
        errcode = undefined;
      }
      resolve({ status, errcode, ms: Date.now() - started });
    });
  });
}

describe("the proxy's network edge against real Synapse", () => {
  it("refuses invalid bytes, absent bodies and slow senders in time, without a 5xx of its own", async () => {
    const [a, b] = net().orgs;
    const user = await net().registerUser(a!);
    const client = a!.clientUrl;
    const federation = a!.federationUrl;
    const token = user.accessToken;
    const signed = `X-Matrix origin="${b!.serverName}",destination="${a!.serverName}",key="ed25519:x",sig="AAAA"`;
    const close = "Connection: close\r\n";
    const results: { what: string; got: Timed }[] = [];
    const check = async (what: string, pending: Promise<Timed>): Promise<Timed> => {
      const got = await pending;
      results.push({ what, got });
      return got;
    };

    // Invalid header bytes: in the credential, 401 without asking Synapse; elsewhere 400 (Synapse
    // itself answers an upload's non-ASCII Content-Type with a 500).
    const whoami = "GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: x\r\n";
    for (const [what, header, errcode] of [
      ["Bearer with a 0xFF byte", "Authorization: Bearer \xff\r\n", "M_UNKNOWN_TOKEN"],
      ["Bearer with UTF-8 bytes", `Authorization: Bearer ${token}\xc3\xb6\r\n`, "M_UNKNOWN_TOKEN"],
      ["empty Bearer", "Authorization: Bearer \r\n", "M_MISSING_TOKEN"],
      ["Basic with a 0xFF byte", "Authorization: Basic \xff\r\n", "M_UNKNOWN_TOKEN"],
      ["not a Bearer token", "Authorization: Basic dXNlcg==\r\n", "M_MISSING_TOKEN"],
    ] as const) {
      const got = await check(what, timedRaw(client, `${whoami}${header}${close}\r\n`));
      expect([got.status, got.errcode], what).toEqual([401, errcode]);
    }
    for (const query of ["%FF", "%E2%82%AC", "a%00b", ""]) {
      const res = await fetch(`${client}/_matrix/client/v3/account/whoami?access_token=${query}`);
      expect(res.status, `access_token=${query}`).toBe(401);
    }
    for (const [what, head] of [
      ["0xFF in another header", `${whoami}Authorization: Bearer ${token}\r\nX-Junk: \xff\xfe\r\n`],
      ["0xFF in Host", `GET /_matrix/client/versions HTTP/1.1\r\nHost: \xff\r\n`],
      [
        "0xFF in an upload's Content-Type",
        `POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/\xff\r\nContent-Length: 3\r\n${close}\r\nabc`,
      ],
      ["a control byte in a header", `${whoami}X-Junk: a\x01b\r\n`],
    ] as const) {
      const got = await check(what, timedRaw(client, `${head}${head.endsWith("abc") ? "" : `${close}\r\n`}`));
      expect(got.status, what).toBe(400);
    }
    const fedOrigin = await check(
      "0xFF in the X-Matrix origin",
      timedRaw(
        federation,
        `GET /_matrix/federation/v1/query/profile HTTP/1.1\r\nHost: x\r\nAuthorization: X-Matrix origin="\xff",key="ed25519:x",sig="x"\r\n${close}\r\n`,
      ),
    );
    expect([fedOrigin.status, fedOrigin.errcode]).toEqual([401, "M_UNAUTHORIZED"]);

    // Declared but absent bodies: 413 at once, on both ports, streamed and inspected endpoints.
    const huge = "Content-Length: 99999999\r\n\r\n";
    for (const [what, url, head] of [
      [
        "client, streamed",
        client,
        `PUT /_matrix/client/v3/rooms/!x:y/send/m.room.message/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`,
      ],
      [
        "client, inspected",
        client,
        `POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`,
      ],
      [
        "client, image upload",
        client,
        `POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/jpeg\r\n`,
      ],
      [
        "federation",
        federation,
        `PUT /_matrix/federation/v1/send/t1 HTTP/1.1\r\nHost: x\r\nAuthorization: ${signed}\r\n`,
      ],
    ] as const) {
      const got = await check(`declared, absent body: ${what}`, timedRaw(url, head + huge));
      expect([got.status, got.errcode], what).toEqual([413, "M_TOO_LARGE"]);
      expect(got.ms, what).toBeLessThan(HEADERS_TIMEOUT_MS / 4);
    }

    // Slow senders: cut off with 408 no later than the configured timeout (plus a margin).
    const dribble = Array.from({ length: 40 }, (_, i) => `X-Slow-${String(i)}: x\r\n`);
    for (const url of [client, federation]) {
      const got = await check(
        `headers dribbled (${url})`,
        timedRaw(url, "GET /_matrix/client/versions HTTP/1.1\r\n", [...dribble]),
      );
      expect([got.status, got.errcode], url).toEqual([408, "M_UNKNOWN"]);
      expect(got.ms, url).toBeLessThan(HEADERS_TIMEOUT_MS + MARGIN_MS);
    }
    const stalled = 'Content-Length: 100\r\n\r\n{"a":';
    for (const [what, url, head] of [
      [
        "client, streamed",
        client,
        `PUT /_matrix/client/v3/rooms/!x:y/send/m.room.message/t2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`,
      ],
      [
        "client, inspected",
        client,
        `POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`,
      ],
      [
        "client, image upload",
        client,
        `POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: image/png\r\n`,
      ],
      [
        "federation",
        federation,
        `PUT /_matrix/federation/v1/send/t2 HTTP/1.1\r\nHost: x\r\nAuthorization: ${signed}\r\n`,
      ],
    ] as const) {
      const got = await check(`stalled body: ${what}`, timedRaw(url, head + stalled));
      expect([got.status, got.errcode], what).toEqual([408, "M_UNKNOWN"]);
      expect(got.ms, what).toBeGreaterThanOrEqual(BODY_IDLE_TIMEOUT_MS - 100);
      expect(got.ms, what).toBeLessThan(BODY_IDLE_TIMEOUT_MS + MARGIN_MS);
    }

    console.log(
      "edge refusals (status, ms):",
      JSON.stringify(results.map((r) => [r.what, r.got.status, r.got.ms])),
    );
    // None of ours is a 5xx, and none was held longer than the configured timeouts allow.
    expect(results.filter((r) => r.got.status >= 500 || r.got.status === 0)).toEqual([]);
    const longest = Math.max(HEADERS_TIMEOUT_MS, BODY_IDLE_TIMEOUT_MS) + MARGIN_MS;
    expect(results.filter((r) => r.got.ms >= longest)).toEqual([]);

    // Still serving.
    const policy = a!.services.find((s) => s.name === "policy-module")!;
    expect((await fetch(`${policy.url}/health`)).status).toBe(200);
    const ok = await fetch(`${client}/_matrix/client/v3/account/whoami`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(ok.status).toBe(200);
  });
});
