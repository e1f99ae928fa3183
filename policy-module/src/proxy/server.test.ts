import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect as connectTcp, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as connectTls } from "node:tls";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "@medmesh/common";
import { cleanJpeg, jpegWithGps } from "../media/test-images.ts";
import { ProxyConfigSchema } from "./config.ts";
import { startProxy, type RunningProxy } from "./server.ts";

// The proxy's network edge (credentials, declared sizes, timeouts) in front of a stand-in
// homeserver that records what reaches it; the same against real Synapse is
// tests/e2e/proxy-hostile.test.ts.

const HEADERS_TIMEOUT = 400;
const BODY_IDLE = 400;
/** Node checks the headers timeout on an interval (a tenth of the timeout here) plus scheduling. */
const MARGIN = 600;

let dir: string;
let upstream: Server;
let proxy: RunningProxy;
const reached: string[] = [];
const uploads: { contentLength: string | undefined; body: Buffer }[] = [];
/** Where the proxy spools uploads in these tests (os.tmpdir() follows TMPDIR). */
let spoolDir: string;
const whoamiTokens: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "medmesh-proxy-test-"));
  spoolDir = join(dir, "spool");
  mkdirSync(spoolDir);
  process.env.TMPDIR = spoolDir;
  execFileSync("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
    ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-subj", "/CN=localhost"],
    ...["-days", "1"],
  ]);
  upstream = createServer((req, res) => {
    if (req.url?.startsWith("/_matrix/client/v3/account/whoami")) {
      whoamiTokens.push(req.headers.authorization ?? "");
      const ok = req.headers.authorization === "Bearer good";
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(JSON.stringify(ok ? { user_id: "@alice:hs" } : { errcode: "M_UNKNOWN_TOKEN" }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      reached.push(`${req.method ?? ""} ${req.url ?? ""}`);
      if (req.url?.includes("/upload")) {
        uploads.push({ contentLength: req.headers["content-length"], body: Buffer.concat(chunks) });
      }
      res.end("{}");
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const upstreamUrl = `http://127.0.0.1:${String((upstream.address() as AddressInfo).port)}`;
  const config = ProxyConfigSchema.parse({
    client: { host: "127.0.0.1", port: 0 },
    federation: {
      host: "127.0.0.1",
      port: 0,
      upstream: upstreamUrl,
      tls: { certificate: join(dir, "cert.pem"), private_key: join(dir, "key.pem") },
    },
    limits: {
      json_body_bytes: 1000,
      media_body_bytes: 100_000,
      federation_body_bytes: 50_000,
      headers_timeout_ms: HEADERS_TIMEOUT,
      body_idle_timeout_ms: BODY_IDLE,
    },
  });
  proxy = await startProxy(config, new URL(upstreamUrl), {
    log: createLogger("test", "silent"),
    metrics: new Registry(),
    serverName: "hs",
    trust: { isTrusted: () => true },
    invites: { check: () => Promise.resolve({ allowed: true }), changed: () => undefined },
    directory: { search: () => Promise.resolve(undefined), profile: () => Promise.resolve(undefined) },
    medmesh: () => ({ status: 404, body: { errcode: "M_NOT_FOUND", error: "none" } }),
  });
});

afterAll(async () => {
  await proxy.stop();
  await new Promise<void>((r) =>
    upstream.close(() => {
      r();
    }),
  );
  rmSync(dir, { recursive: true, force: true });
});

interface RawAnswer {
  status: number;
  body: string;
  ms: number;
  /** Whether the proxy closed the connection (rather than waiting for more). */
  closed: boolean;
}

/**
 * Writes `head` (latin1: every byte as given) on a fresh connection, then `rest` parts one every
 * `gapMs`; resolves when the proxy closes the connection or 3 s pass.
 */
function raw(
  port: "client" | "federation",
  head: string,
  rest: string[] = [],
  gapMs = 100,
): Promise<RawAnswer> {
  const url = new URL(port === "client" ? proxy.clientUrl : proxy.federationUrl);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket =
      port === "client"
        ? connectTcp(Number(url.port), url.hostname)
        : connectTls({ port: Number(url.port), host: url.hostname, rejectUnauthorized: false });
    socket.once(port === "client" ? "connect" : "secureConnect", () => {
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
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      socket.destroy();
      const [, status = "0"] = /^HTTP\/1\.1 (\d{3})/.exec(answer) ?? [];
      resolve({
        status: Number(status),
        body: answer.split("\r\n\r\n")[1] ?? "",
        ms: Date.now() - started,
        closed,
      });
    };
    socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    socket.on("close", () => {
      finish(true);
    });
    socket.on("error", reject);
    setTimeout(() => {
      finish(false);
    }, 3000);
  });
}

const errcodeOf = (a: RawAnswer): unknown => (JSON.parse(a.body) as { errcode?: unknown }).errcode;

describe("proxy edge: credentials", () => {
  it("refuses invalid bytes in the Authorization header or access_token with 401, asking no one", async () => {
    whoamiTokens.length = 0;
    for (const [credential, errcode] of [
      ["Authorization: Bearer \xff\r\n", "M_UNKNOWN_TOKEN"],
      ["Authorization: Bearer t\xc3\xb6k\r\n", "M_UNKNOWN_TOKEN"],
      ["Authorization: Bearer\r\n", "M_MISSING_TOKEN"],
      ["Authorization: Basic \xff\xfe\r\n", "M_UNKNOWN_TOKEN"],
      ["Authorization: Basic dXNlcg==\r\n", "M_MISSING_TOKEN"],
    ] as const) {
      const a = await raw(
        "client",
        `GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${credential}\r\n`,
      );
      expect([a.status, errcodeOf(a)], credential).toEqual([401, errcode]);
    }
    for (const query of ["%FF", "%E2%82%AC", ""]) {
      const res = await fetch(`${proxy.clientUrl}/_matrix/client/v3/account/whoami?access_token=${query}`);
      expect(res.status, query).toBe(401);
    }
    expect(whoamiTokens).toEqual([]);
    // Elsewhere too (Synapse fails on an upload's non-ASCII Content-Type with a 500): 400.
    for (const header of ["Host: \xff", "X-Odd: \xfe\xff", "Content-Type: image/\xff"]) {
      const a = await raw(
        "client",
        `POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n${header}\r\nAuthorization: Bearer good\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      expect([a.status, errcodeOf(a)], header).toEqual([400, "M_UNKNOWN"]);
    }
    const signature = await raw(
      "federation",
      'GET /_matrix/federation/v1/query/profile HTTP/1.1\r\nHost: x\r\nAuthorization: X-Matrix origin="peer",key="ed25519:a",sig="\xff"\r\nConnection: close\r\n\r\n',
    );
    expect([signature.status, errcodeOf(signature)]).toEqual([401, "M_UNAUTHORIZED"]);
    expect(reached.filter((r) => r.includes("upload") || r.includes("query/profile"))).toEqual([]);
  });
});

describe("proxy edge: declared sizes", () => {
  it.each([
    ["client", "PUT /_matrix/client/v3/rooms/!r:hs/send/m.room.message/t1", "Bearer good"],
    ["client", "POST /_matrix/client/v3/createRoom", "Bearer good"],
    ["client", "POST /_matrix/media/v3/upload", "Bearer good"],
    ["federation", "PUT /_matrix/federation/v1/send/t1", 'X-Matrix origin="peer",key="ed25519:a",sig="x"'],
  ] as const)(
    "answers a declared-but-absent huge body with 413 at once (%s %s)",
    async (port, target, auth) => {
      const a = await raw(
        port,
        `${target} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Type: image/png\r\nContent-Length: 99999999\r\n\r\n`,
      );
      expect([a.status, errcodeOf(a)]).toEqual([413, "M_TOO_LARGE"]);
      expect(a.closed).toBe(true);
      expect(a.ms).toBeLessThan(BODY_IDLE);
    },
  );

  it("applies the inspected endpoint's own (smaller) limit to its declared body", async () => {
    const a = await raw(
      "client",
      "POST /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 5000\r\n\r\n{",
    );
    expect([a.status, errcodeOf(a)]).toEqual([413, "M_TOO_LARGE"]);
    expect(a.ms).toBeLessThan(BODY_IDLE);
    expect(reached.filter((r) => r.includes("createRoom"))).toEqual([]);
  });

  it("does not invite a body announced with Expect: 100-continue when it is too large", async () => {
    const a = await raw(
      "client",
      "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    );
    expect(a.status).toBe(413); // not "100 Continue" first
  });
});

describe("proxy edge: slow senders", () => {
  it.each(["client", "federation"] as const)(
    "cuts headers dribbled on the %s port off with 408 within the headers timeout",
    async (port) => {
      const a = await raw(
        port,
        "GET /_matrix/client/versions HTTP/1.1\r\n",
        Array.from({ length: 30 }, (_, i) => `X-Slow-${String(i)}: x\r\n`),
      );
      expect([a.status, errcodeOf(a)]).toEqual([408, "M_UNKNOWN"]);
      expect(a.ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - 50);
      expect(a.ms).toBeLessThan(HEADERS_TIMEOUT + MARGIN);
    },
  );

  it.each([
    ["client", "PUT /_matrix/client/v3/rooms/!r:hs/send/m.room.message/t2", "Bearer good"],
    ["client", "POST /_matrix/client/v3/createRoom", "Bearer good"],
    ["federation", "PUT /_matrix/federation/v1/send/t2", 'X-Matrix origin="peer",key="ed25519:a",sig="x"'],
  ] as const)(
    "cuts a stalled body off with 408 within the idle timeout (%s %s)",
    async (port, target, auth) => {
      const a = await raw(
        port,
        `${target} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth}\r\nContent-Length: 100\r\n\r\n{"a":`,
      );
      expect([a.status, errcodeOf(a)]).toEqual([408, "M_UNKNOWN"]);
      expect(a.closed).toBe(true);
      expect(a.ms).toBeGreaterThanOrEqual(BODY_IDLE - 50);
      expect(a.ms).toBeLessThan(BODY_IDLE + MARGIN);
      expect(reached.filter((r) => r.endsWith("/t2"))).toEqual([]);
    },
  );

  it("lets a body through that keeps arriving, slower in total than the idle timeout", async () => {
    const parts = Array.from({ length: 8 }, () => "x".repeat(10));
    const a = await raw(
      "client",
      "PUT /_matrix/client/v3/rooms/!r:hs/send/m.room.message/t3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nConnection: close\r\nContent-Length: 80\r\n\r\n",
      parts,
      150,
    );
    expect(a.status).toBe(200);
    expect(a.ms).toBeGreaterThan(BODY_IDLE);
  });
});

describe("proxy edge: image uploads", () => {
  const upload = (body: Buffer | ReadableStream, type: string): Promise<Response> =>
    fetch(`${proxy.clientUrl}/_matrix/media/v3/upload`, {
      method: "POST",
      headers: { authorization: "Bearer good", "content-type": type },
      body,
      duplex: "half",
    });

  it("spools, strips and streams an image on with its new length; the temporary file goes", async () => {
    uploads.length = 0;
    const res = await upload(jpegWithGps(), "image/jpeg");
    expect(res.status).toBe(200);
    expect(uploads).toHaveLength(1);
    expect(uploads[0]?.body.equals(cleanJpeg())).toBe(true);
    expect(uploads[0]?.contentLength).toBe(String(cleanJpeg().length));
    await expect.poll(() => readdirSync(spoolDir)).toEqual([]);
  });

  it("refuses a broken image, and one past media_body_bytes sent in chunks, leaving no file behind", async () => {
    uploads.length = 0;
    const broken = await upload(Buffer.from("not a png"), "image/png");
    expect(broken.status).toBe(400);
    const big = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(10_000)); // 200 KB > 100 KB
        controller.close();
      },
    });
    const tooBig = await upload(big, "image/jpeg").catch(() => undefined);
    // The answer is 413, unless the connection closed while fetch was still sending.
    if (tooBig) expect(tooBig.status).toBe(413);
    expect(uploads).toEqual([]);
    await expect.poll(() => readdirSync(spoolDir)).toEqual([]);
  });
});
