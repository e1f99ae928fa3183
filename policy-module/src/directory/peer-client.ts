import { request as httpRequest } from "node:http";
import { request } from "node:https";
import { signRequest, type OrgKey } from "../trust/request-signing.ts";

/**
 * Signed requests to trusted peers' MedMesh federation endpoints (`https://<server name>`, as peers
 * reach each other's federation port), trusting the network's CA list like Synapse does. A POST's
 * JSON body is part of what is signed (as Matrix federation signs `content`).
 */
export function createPeerClient(deps: {
  serverName: string;
  orgKey: OrgKey | undefined;
  ca: Buffer[] | undefined;
  /** Where a peer is reached (tests and the bench: in-process receivers); default https://<server>. */
  baseUrlOf?: (server: string) => URL;
}) {
  const send = (
    method: "GET" | "POST",
    server: string,
    uri: string,
    content: unknown,
    timeoutMs: number,
  ): Promise<unknown> => {
    if (!deps.orgKey) return Promise.reject(new Error("no organisation key configured for peer requests"));
    const authorization = signRequest(deps.orgKey, {
      method,
      uri,
      origin: deps.serverName,
      destination: server,
      ...(content === undefined ? {} : { content }),
    });
    const body = content === undefined ? undefined : Buffer.from(JSON.stringify(content));
    const base =
      deps.baseUrlOf?.(server) ?? new URL(`https://${server.includes(":") ? server : `${server}:8448`}`);
    return new Promise((resolve, reject) => {
      const req = (base.protocol === "http:" ? httpRequest : request)(
        {
          hostname: base.hostname,
          port: base.port,
          path: uri,
          method,
          headers: {
            authorization,
            accept: "application/fhir+json, application/json",
            ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}),
          },
          ...(deps.ca ? { ca: deps.ca } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > 5 * 1024 * 1024) req.destroy(new Error("peer answer too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            if (res.statusCode !== 200) {
              reject(new PeerError(res.statusCode ?? 0, `${server} answered ${String(res.statusCode)}`));
              return;
            }
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
            } catch {
              reject(new Error(`${server} answered with invalid JSON`));
            }
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () =>
        req.destroy(new Error(`${server} did not answer within ${String(timeoutMs)} ms`)),
      );
      req.on("error", reject);
      req.end(body);
    });
  };
  return {
    getJson: (server: string, uri: string, timeoutMs: number): Promise<unknown> =>
      send("GET", server, uri, undefined, timeoutMs),
    postJson: (server: string, uri: string, content: unknown, timeoutMs: number): Promise<unknown> =>
      send("POST", server, uri, content, timeoutMs),
  };
}
export type PeerClient = ReturnType<typeof createPeerClient>;

export class PeerError extends Error {
  override name = "PeerError";
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}
