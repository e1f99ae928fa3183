import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { RizivPractitioner } from "./client.ts";

export type RizivTestServerMode = "normal" | "malformed" | "slow" | "http500";

export interface RizivTestServer {
  url: string;
  setMode(mode: RizivTestServerMode): void;
  stop(): Promise<void>;
}

/**
 * A stand-in for the configurable RIZIV endpoint (see riziv.ts for the contract), for tests and the local
 * demo. Records are keyed by their number with separators removed. "slow" holds every answer for delayMs.
 */
export async function startRizivTestServer(
  records: readonly RizivPractitioner[],
  opts: { delayMs?: number } = {},
): Promise<RizivTestServer> {
  const byNumber = new Map(records.map((r) => [r.number.replace(/[\s.\-/]/g, ""), r]));
  const delayMs = opts.delayMs ?? 2_000;
  let mode: RizivTestServerMode = "normal";
  const timers = new Set<NodeJS.Timeout>();

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    const answer = (): void => {
      const m = /^\/practitioners\/([^/?#]+)$/.exec(req.url ?? "");
      const record = m?.[1] ? byNumber.get(decodeURIComponent(m[1])) : undefined;
      if (req.method !== "GET" || !m) send(res, 404, { error: "not found" });
      else if (mode === "http500") send(res, 500, { error: "internal error" });
      else if (!record) send(res, 404, { error: "unknown number" });
      // Valid JSON, wrong shape: the adapter's schema check must catch it.
      else if (mode === "malformed") send(res, 200, { number: Number(record.number), name: record.lastName });
      else send(res, 200, record);
    };
    if (mode !== "slow") {
      answer();
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      answer();
    }, delayMs);
    timers.add(t);
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    setMode(m) {
      mode = m;
    },
    async stop() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // Held ("slow") requests would otherwise keep close() waiting.
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
