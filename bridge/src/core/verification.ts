import { asUser, MatrixRequestError } from "@medmesh/common";
import type { Logger } from "pino";
import type { DueGhost, GhostStore } from "../store/index.ts";
import { Counter, type Registry } from "prom-client";
import type { VendorLeaders } from "./leaders.ts";

const RETRY_MS = 60_000;

/**
 * Vendor users who come with a professional registration are verified by the organisation's
 * identity module like its own users: the bridge asks for it as the ghost, through the proxy
 * (`POST /_medmesh/identity/v1/verification`), once per registration or name it is given. From
 * there the identity module owns the status: registry check, re-verification, revocation, and
 * the badge in every room the ghost is in. Due requests are kept in the store (nothing is lost
 * in a crash); an unreachable identity module is asked again a minute later. The registration
 * number is never logged. Each vendor's ghosts are submitted by that vendor's leader only.
 */
export function ghostVerification(d: {
  homeserverUrl: string;
  asToken: string;
  ghosts: GhostStore;
  leaders: VendorLeaders;
  log: Logger;
  metrics: Registry;
}) {
  const requests = new Counter({
    name: "medmesh_bridge_verification_requests_total",
    help: "Bridged users' registrations submitted to the identity module, by its answer",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  let running: Promise<void> | undefined;
  let again = false;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;

  const submit = async (ghost: DueGhost): Promise<boolean> => {
    const reg = (
      typeof ghost.registration === "string" ? JSON.parse(ghost.registration) : ghost.registration
    ) as { registry: string; number: string };
    let answer: string;
    try {
      const outcome = await asUser(d.homeserverUrl, d.asToken, ghost.user_id)<{
        status: string;
        reason?: string;
      }>("POST", "/_medmesh/identity/v1/verification", {
        registry: reg.registry,
        number: reg.number,
        claimed_name: ghost.display_name ?? "",
      });
      answer = outcome.reason ? `${outcome.status}: ${outcome.reason}` : outcome.status;
      requests.inc({ outcome: outcome.status });
    } catch (err) {
      if (!(err instanceof MatrixRequestError) || err.status === 429 || err.status >= 500) {
        requests.inc({ outcome: "unreachable" });
        d.log.warn({ err, user_id: ghost.user_id }, "identity module unreachable; asking again later");
        return false;
      }
      answer = `refused: ${err.errcode}: ${err.message}`;
      requests.inc({ outcome: "refused" });
    }
    await d.ghosts.verified(ghost, reg, answer);
    d.log.info(
      { user_id: ghost.user_id, registry: reg.registry, answer },
      "bridged user's registration checked",
    );
    return true;
  };

  const run = async (): Promise<void> => {
    do {
      again = false;
      const vendors = d.leaders.led();
      if (vendors.length === 0) return;
      const due = await d.ghosts.dueForVerification(100, vendors);
      for (const ghost of due) {
        if (stopped) return;
        if (!d.leaders.leadsGhost(ghost.user_id)) continue; // its vendor's new leader submits it
        if (!(await submit(ghost))) {
          retry ??= setTimeout(() => {
            retry = undefined;
            wake();
          }, RETRY_MS);
          return;
        }
      }
      if (due.length === 100) again = true;
    } while (again && !stopped);
  };

  const wake = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = run()
      .catch((err: unknown) => {
        d.log.warn({ err }, "could not submit bridged users' registrations");
      })
      .finally(() => {
        running = undefined;
      });
  };

  return {
    wake,
    start: wake,
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(retry);
      await running;
    },
  };
}
