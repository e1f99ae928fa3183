import type { Logger } from "pino";
import {
  anchorSignatureValid,
  signAnchor,
  type AnchorStore,
  type SignedAnchor,
  type SigningKey,
} from "./anchor.ts";
import { GENESIS, type AuditBreak, type AuditLog } from "./audit-log.ts";

export type AnchorResult =
  | { anchored: true; anchor: SignedAnchor }
  /** Nothing new since the latest anchor, or an empty log. */
  | { anchored: false; anchor: SignedAnchor | undefined }
  /** The chain does not verify against the latest anchor: signing its head now would hide that. */
  | { anchored: false; refused: AuditBreak };

export interface Anchorer {
  anchorNow(now?: Date): Promise<AnchorResult>;
  /** Anchors now and then every `intervalMs`, until stop(). */
  start(intervalMs: number): void;
  stop(): Promise<void>;
}

export interface AnchorerDeps {
  audit: AuditLog;
  anchors: AnchorStore;
  key: SigningKey;
  serverName: string;
  log: Logger;
}

/**
 * Signs the chain's head into the anchor store, but only a head that verifies from the previous
 * anchor: otherwise a restart after someone deleted the newest records would sign the shortened
 * chain and make the deletion undetectable. Checking from the previous anchor (not the genesis)
 * keeps each run proportional to what was written since.
 */
export function createAnchorer(d: AnchorerDeps): Anchorer {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();

  const anchorOnce = async (now: Date): Promise<AnchorResult> => {
    const previous = await d.anchors.latest();
    if (previous && !anchorSignatureValid(previous, { kid: d.key.kid, key: d.key.privateKey }))
      return {
        anchored: false,
        refused: {
          kind: "bad_anchor",
          seq: previous.anchor.seq,
          message: `the latest anchor in ${d.anchors.where} is not signed by the organisation key`,
        },
      };
    const report = previous
      ? await d.audit.verify({ anchor: previous.anchor, fromAnchor: true })
      : await d.audit.verify();
    if (report.break) return { anchored: false, refused: report.break };
    // An empty log is anchored too (at the genesis): from then on a missing anchor file means
    // someone removed it, never "not written yet".
    const head = report.last ?? { seq: 0, hash: GENESIS, at: now.toISOString() };
    if (previous?.anchor.seq === head.seq && previous.anchor.hash === head.hash)
      return { anchored: false, anchor: previous };
    const anchor = signAnchor(d.key, head, d.serverName, now);
    await d.anchors.append(anchor);
    return { anchored: true, anchor };
  };

  const anchorNow = (now = new Date()): Promise<AnchorResult> => {
    // One at a time in this process: two overlapping runs would only write the same anchor twice.
    const result = running.then(() => anchorOnce(now));
    running = result.catch(() => undefined);
    return result;
  };

  const tick = async (): Promise<void> => {
    try {
      const r = await anchorNow();
      if ("refused" in r) d.log.error({ break: r.refused }, "audit chain does not verify: head not anchored");
      else if (r.anchored) d.log.debug({ seq: r.anchor.anchor.seq }, "audit chain head anchored");
    } catch (err) {
      d.log.error({ err }, "audit anchoring failed");
    }
  };

  return {
    anchorNow,
    start(intervalMs) {
      void tick();
      timer = setInterval(() => void tick(), intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
