import { readFileSync } from "node:fs";
import type { RunningOrganisation } from "@medmesh/deploy";

export type ServiceName = "policy-module" | "bridge";

export interface AdminApi {
  /** The service's internal listener. */
  readonly url: string;
  /** Its admin token (the file `medmesh generate` wrote, as operators' scripts read it). */
  readonly token: string;
  /** A request to the internal listener with the admin token; the Response as it came. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** A JSON request; a status other than 2xx throws with the service's answer. */
  json<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  /** GET /metrics as text. */
  metrics(): Promise<string>;
}

/**
 * A service's admin API and /metrics, authenticated as an operator would be: with the admin token
 * file the generator wrote for that service. Tests use this instead of bare fetch, so every test
 * sees the listener as it is in production.
 */
export function adminApi(org: RunningOrganisation, service: ServiceName): AdminApi {
  const svc = org.services.find((s) => s.name === service);
  if (!svc) throw new Error(`${org.org.id} runs no ${service}`);
  const token = readFileSync(org.adminTokenFiles[service], "utf8").trim();
  const call = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${svc.url}${path}`, {
      ...init,
      headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` },
    });
  return {
    url: svc.url,
    token,
    fetch: call,
    async json<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await call(path, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${service} ${method} ${path}: ${String(res.status)} ${text}`);
      return (text ? JSON.parse(text) : {}) as T;
    },
    async metrics(): Promise<string> {
      const res = await call("/metrics");
      if (!res.ok) throw new Error(`${service} /metrics: ${String(res.status)} ${await res.text()}`);
      return res.text();
    },
  };
}
