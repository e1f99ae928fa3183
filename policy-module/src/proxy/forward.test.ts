import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Counter, Histogram, Registry } from "prom-client";
import { createLogger } from "@medmesh/common";
import { createForwarder } from "./forward.ts";

// The forwarder's mechanics (streaming, headers, errors) tested against a plain HTTP upstream that
// records what arrives; the proxy in front of real Synapse is covered by tests/e2e/proxy.test.ts.

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.close(() => {
            resolve();
          });
          s.closeAllConnections();
        }),
    ),
  );
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
}

async function proxyTo(
  upstream: string,
  limits: { maxBodyBytes?: number; bodyIdleMs?: number } = {},
): Promise<{ url: string; registry: Registry }> {
  const registry = new Registry();
  const forwarder = createForwarder({
    maxBodyBytes: limits.maxBodyBytes ?? 64 * 1024 * 1024,
    bodyIdleMs: limits.bodyIdleMs ?? 10_000,
    listener: "client",
    upstream: new URL(upstream),
    scheme: "http",
    log: createLogger("test", "silent"),
    requests: new Counter({
      name: "r",
      help: "r",
      labelNames: ["listener", "method", "status"],
      registers: [registry],
    }),
    duration: new Histogram({ name: "d", help: "d", labelNames: ["listener"], registers: [registry] }),
  });
  const server = createServer(forwarder);
  const url = await listen(server);
  return { url, registry };
}

describe("proxy forwarder", () => {
  it("forwards method, path, body and status; sets X-Forwarded-*; drops hop-by-hop and spoofed headers", async () => {
    let seen: {
      method?: string | undefined;
      url?: string | undefined;
      headers?: IncomingMessage["headers"];
      body?: string;
    } = {};
    const upstream = await listen(
      createServer((req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => {
          seen = { method: req.method, url: req.url, headers: req.headers, body };
          res.writeHead(201, {
            "x-upstream": "yes",
            connection: "x-per-hop",
            "x-per-hop": "for the proxy only",
            "content-type": "application/json",
          });
          res.end('{"ok":true}');
        });
      }),
    );
    const { url, registry } = await proxyTo(upstream);
    const res = await fetch(`${url}/_matrix/client/v3/rooms/!a%3Ab/send/m.room.message/t1?x=1`, {
      method: "PUT",
      headers: { "x-forwarded-for": "6.6.6.6", "proxy-authorization": "secret", authorization: "Bearer tok" },
      body: '{"body":"hi"}',
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ ok: true });
    expect(res.headers.get("x-upstream")).toBe("yes");
    expect(res.headers.get("x-per-hop")).toBeNull();
    expect(seen.method).toBe("PUT");
    expect(seen.url).toBe("/_matrix/client/v3/rooms/!a%3Ab/send/m.room.message/t1?x=1");
    expect(seen.body).toBe('{"body":"hi"}');
    expect(seen.headers?.authorization).toBe("Bearer tok");
    expect(seen.headers?.["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen.headers?.["x-forwarded-proto"]).toBe("http");
    expect(seen.headers?.["x-forwarded-host"]).toBe(new URL(url).host);
    expect(seen.headers?.["proxy-authorization"]).toBeUndefined();
    expect(await registry.getSingleMetric("r")?.get()).toMatchObject({
      values: [{ labels: { listener: "client", method: "PUT", status: "2xx" }, value: 1 }],
    });
  });

  it("streams a request body: the homeserver receives the first part before the client sent the rest", async () => {
    let firstChunkAt = 0;
    const upstream = await listen(
      createServer((req, res) => {
        let total = 0;
        req.on("data", (c: Buffer) => {
          if (total === 0) firstChunkAt = Date.now();
          total += c.length;
        });
        req.on("end", () => res.end(String(total)));
      }),
    );
    const { url } = await proxyTo(upstream);
    const target = new URL("/_matrix/media/v3/upload", url);
    const answer = new Promise<string>((resolve, reject) => {
      const req = request(
        target,
        { method: "POST", headers: { "content-type": "application/octet-stream" } },
        (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => {
            resolve(body);
          });
        },
      );
      req.on("error", reject);
      req.write(Buffer.alloc(64 * 1024, 1));
      // Hold the rest back; send it only after the upstream has already seen the first part.
      const wait = setInterval(() => {
        if (firstChunkAt) {
          clearInterval(wait);
          // A buffering proxy would never pass the first part on: the request would hang and fail.
          req.end(Buffer.alloc(8 * 1024 * 1024, 2));
        }
      }, 10);
    });
    expect(await answer).toBe(String(64 * 1024 + 8 * 1024 * 1024));
    expect(firstChunkAt).toBeGreaterThan(0);
  });

  it("refuses request targets other than a path, without asking the homeserver", async () => {
    let upstreamHits = 0;
    const upstream = await listen(
      createServer((_req, res) => {
        upstreamHits++;
        res.end();
      }),
    );
    const { url } = await proxyTo(upstream);
    const { port } = new URL(url);
    for (const target of ["http://evil.example/", "//evil.example/x", "*"]) {
      const raw = await new Promise<string>((resolve) => {
        const socket = connect(Number(port), "127.0.0.1", () => {
          socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        });
        let data = "";
        socket.on("data", (c: Buffer) => (data += c.toString()));
        socket.on("close", () => {
          resolve(data);
        });
      });
      expect(raw, target).toMatch(/^HTTP\/1\.1 400/);
      expect(raw).toContain('"errcode":"M_UNRECOGNIZED"');
    }
    expect(upstreamHits).toBe(0);
  });

  it("answers with a Matrix error when the homeserver is unreachable", async () => {
    const closed = await listen(createServer());
    const { url } = await proxyTo(closed);
    await new Promise<void>((resolve) => {
      servers[0]?.close(() => {
        resolve();
      });
    });
    const res = await fetch(`${url}/_matrix/client/versions`);
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ errcode: "M_UNKNOWN" });
  });

  it("aborts the upstream request when the client goes away (no orphaned long-polls)", async () => {
    const upstreamState = { closed: false };
    const upstream = await listen(
      createServer((req) => {
        req.socket.on("close", () => (upstreamState.closed = true)); // never answers: a long-poll
      }),
    );
    const { url } = await proxyTo(upstream);
    const controller = new AbortController();
    const pending = fetch(`${url}/_matrix/client/v3/sync?timeout=30000`, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 200));
    controller.abort();
    await expect(pending).rejects.toThrow();
    const deadline = Date.now() + 5000;
    while (!upstreamState.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(upstreamState.closed).toBe(true);
  });

  describe("limits on a streamed body", () => {
    /** An upstream that reads whole bodies and records whether each request arrived complete. */
    async function recordingUpstream(): Promise<{ url: string; seen: ("complete" | "aborted")[] }> {
      const seen: ("complete" | "aborted")[] = [];
      const url = await listen(
        createServer((req, res) => {
          req.resume();
          req.on("end", () => {
            seen.push("complete");
            res.end("ok");
          });
          req.on("aborted", () => seen.push("aborted"));
        }),
      );
      return { url, seen };
    }

    /** Sends `parts` with `gapMs` between them (chunked); resolves with the answer and its time. */
    function send(
      url: string,
      parts: Buffer[],
      gapMs: number,
    ): Promise<{ status: number; body: string; ms: number; connection: string | undefined }> {
      const started = Date.now();
      return new Promise((resolve, reject) => {
        const req = request(
          new URL("/_matrix/client/v3/rooms/!r:hs/send/m.room.message/t", url),
          { method: "PUT", headers: { "content-type": "application/json" } },
          (res) => {
            let body = "";
            res.on("data", (c: Buffer) => (body += c.toString()));
            res.on("end", () => {
              resolve({
                status: res.statusCode ?? 0,
                body,
                ms: Date.now() - started,
                connection: res.headers.connection,
              });
            });
          },
        );
        req.on("error", reject);
        let i = 0;
        const next = (): void => {
          const part = parts[i++];
          if (part === undefined) return; // the rest never comes: a stalled sender
          if (req.destroyed) return;
          req.write(part);
          setTimeout(next, gapMs);
        };
        next();
      });
    }

    it("cuts a chunked body off with 413 as soon as it crosses the cap, and drops Synapse's half", async () => {
      const upstream = await recordingUpstream();
      const { url } = await proxyTo(upstream.url, { maxBodyBytes: 100_000 });
      // 60 KB, then 60 KB more, then nothing: the answer must come right after the cap is crossed.
      const answer = await send(url, [Buffer.alloc(60_000, 1), Buffer.alloc(60_000, 1)], 50);
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body)).toMatchObject({ errcode: "M_TOO_LARGE" });
      expect(answer.connection).toBe("close");
      expect(answer.ms).toBeLessThan(2000);
      await expect.poll(() => upstream.seen).toEqual(["aborted"]);
    });

    it("cuts a stalled body off with 408 after the idle timeout", async () => {
      const upstream = await recordingUpstream();
      const { url } = await proxyTo(upstream.url, { bodyIdleMs: 300 });
      const answer = await send(url, [Buffer.from('{"body":')], 0);
      expect(answer.status).toBe(408);
      expect(JSON.parse(answer.body)).toMatchObject({ errcode: "M_UNKNOWN" });
      expect(answer.ms).toBeGreaterThanOrEqual(290);
      expect(answer.ms).toBeLessThan(1500);
      await expect.poll(() => upstream.seen).toEqual(["aborted"]);
    });

    it("lets a slow body that keeps moving through, however long it takes in total", async () => {
      const upstream = await recordingUpstream();
      const { url } = await proxyTo(upstream.url, { bodyIdleMs: 300 });
      const parts = Array.from({ length: 8 }, () => Buffer.alloc(1000, 1));
      const answer = await new Promise<number>((resolve, reject) => {
        const req = request(new URL("/_matrix/media/v3/upload", url), { method: "POST" }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        let i = 0;
        const timer = setInterval(() => {
          const part = parts[i++];
          if (part) req.write(part);
          else {
            clearInterval(timer);
            req.end();
          }
        }, 100); // 0.9 s in all, never 300 ms without a byte
      });
      expect(answer).toBe(200);
      expect(upstream.seen).toEqual(["complete"]);
    });

    it("does not time out a long-poll: only bodies the client sends have an idle timeout", async () => {
      const upstream = await listen(
        createServer((_req, res) => {
          setTimeout(() => res.end("{}"), 800);
        }),
      );
      const { url } = await proxyTo(upstream, { bodyIdleMs: 200 });
      const res = await fetch(`${url}/_matrix/client/v3/sync?timeout=800`);
      expect(res.status).toBe(200);
    });
  });
});
