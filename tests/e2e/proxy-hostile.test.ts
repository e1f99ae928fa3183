import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { adminApi, useTestNetwork } from "../harness/index.ts";

// Junk paths on purpose: the unknown-endpoint refusals they cause are expected.
const net = useTestNetwork({ name: "proxy-hostile", organisations: 2, allowUnknownEndpoints: true });

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
