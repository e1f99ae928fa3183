import { readFileSync } from "node:fs";
import { Refusal, type Route } from "../proxy/index.ts";
import type { ConsoleConfig } from "./config.ts";
import { audited, consoleRoute, json, type ApiDeps } from "./http.ts";

const TIMEOUT_MS = 5000;
const KINDS = ["outbound", "inbound", "appservice"] as const;
type Kind = (typeof KINDS)[number];

/** The bridge's admin API, called with its admin token (read when first needed: a rotated file is read again on failure). */
function bridgeClient(c: NonNullable<ConsoleConfig["bridge"]>) {
  let token: string | undefined;
  const call = async <T>(method: "GET" | "POST", path: string): Promise<T> => {
    token ??= readFileSync(c.token_file, "utf8").trim();
    let res: Response;
    try {
      res = await fetch(new URL(path, c.url), {
        method,
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      throw new Refusal(502, "M_UNAVAILABLE", `The bridge does not answer: ${(err as Error).message}`);
    }
    const body = (await res.json().catch(() => ({}))) as T & { errcode?: string; error?: string };
    if (res.status === 401) token = undefined;
    if (!res.ok)
      throw new Refusal(
        res.status === 404 ? 404 : 502,
        body.errcode ?? "M_UNKNOWN",
        `The bridge refused: ${body.error ?? String(res.status)}`,
      );
    return body;
  };
  return call;
}

const retryPath = (kind: Kind, id: string) =>
  kind === "appservice"
    ? `/_medmesh/admin/v1/appservice/dead-letters/${encodeURIComponent(id)}/retry`
    : `/_medmesh/admin/v1/bridge/${kind}/failed/${id}/retry`;

/**
 * The bridge on the status page: each vendor's queues, the last day's depths, and what could not
 * be carried (the queues' given-up rows and the appservice frame's dead letters), with a retry.
 */
export function bridgeRoutes(d: ApiDeps & { bridge: ConsoleConfig["bridge"] }): Route[] {
  const call = d.bridge ? bridgeClient(d.bridge) : undefined;
  return [
    consoleRoute(d, "GET", "/bridge", "status.read", async () => {
      if (!call) return json({ configured: false });
      const [status, outbound, inbound, appservice] = await Promise.all([
        call<{ vendors: unknown[]; samples: unknown[] }>("GET", "/_medmesh/admin/v1/bridge/status"),
        call<{ failed: unknown[] }>("GET", "/_medmesh/admin/v1/bridge/outbound/failed"),
        call<{ failed: unknown[] }>("GET", "/_medmesh/admin/v1/bridge/inbound/failed"),
        call<{ dead_letters: unknown[] }>("GET", "/_medmesh/admin/v1/appservice/dead-letters"),
      ]);
      return json({
        configured: true,
        vendors: status.vendors,
        samples: status.samples,
        dead_letters: {
          outbound: outbound.failed,
          inbound: inbound.failed,
          appservice: appservice.dead_letters,
        },
      });
    }),
    consoleRoute(
      d,
      "POST",
      "/bridge/dead-letters/{}/{}/retry",
      "bridge.retry",
      async (_ctx, actor, params) => {
        const [kind = "", id = ""] = params;
        if (!(KINDS as readonly string[]).includes(kind))
          throw new Refusal(400, "M_INVALID_PARAM", `kind is one of ${KINDS.join(", ")}, not ${kind}`);
        if (kind !== "appservice" && !/^\d+$/.test(id))
          throw new Refusal(
            400,
            "M_INVALID_PARAM",
            `a queue's dead letter is named by its seq (a number), not ${id}`,
          );
        if (!call) throw new Refusal(404, "M_NOT_FOUND", "No bridge is configured for this organisation");
        const answer = await call<Record<string, unknown>>("POST", retryPath(kind as Kind, id));
        const outcome = answer.outcome === "failed" ? "failed" : "retried";
        await audited(d, actor, "bridge_retry", id, outcome, { kind });
        return json({ outcome, ...(typeof answer.error === "string" ? { error: answer.error } : {}) });
      },
    ),
  ];
}
