import { createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { open } from "node:fs/promises";
import { canonicalJson } from "../crypto/canonical-json.ts";
import type { AnchorPoint, AuditLog, AuditReport } from "./audit-log.ts";

/**
 * A signed statement "the audit chain's head was record `seq` with hash `hash`". Kept outside the
 * audit table, it lets verification notice what the chain alone cannot: the newest records deleted
 * (the chain just ends earlier) or the whole tail re-hashed after an edit.
 */
export interface AuditAnchor extends AnchorPoint {
  type: typeof ANCHOR_TYPE;
  server_name: string;
  /** When the anchored record was written. */
  at: string;
  signed_at: string;
}

export interface SignedAnchor {
  anchor: AuditAnchor;
  /** The organisation key's kid. */
  kid: string;
  /** Ed25519 over the canonical JSON of `anchor`, base64url. */
  sig: string;
}

/** Where signed anchors are kept; one implementation per witness (a file today). */
export interface AnchorStore {
  /** A short description for reports ("file /var/lib/…"). */
  readonly where: string;
  append(anchor: SignedAnchor): Promise<void>;
  /** The anchor with the highest seq among the newest ones, or undefined when none was written. */
  latest(): Promise<SignedAnchor | undefined>;
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
}

const ANCHOR_TYPE = "org.medmesh.audit_anchor";
// Anchors are a few hundred bytes: the newest lines are all in the file's last few KiB, so the
// file's length (one line per anchoring interval) never matters for reading the latest.
const TAIL_BYTES = 16 * 1024;

export function signAnchor(
  key: SigningKey,
  head: AnchorPoint & { at: string },
  serverName: string,
  now = new Date(),
): SignedAnchor {
  const anchor: AuditAnchor = {
    type: ANCHOR_TYPE,
    server_name: serverName,
    seq: head.seq,
    hash: head.hash,
    at: head.at,
    signed_at: now.toISOString(),
  };
  const sig = sign(null, Buffer.from(canonicalJson(anchor)), key.privateKey).toString("base64url");
  return { anchor, kid: key.kid, sig };
}

/** Whether `signed` was signed by `key` (a public or private KeyObject; its public half checks). */
export function anchorSignatureValid(signed: SignedAnchor, key: { kid: string; key: KeyObject }): boolean {
  if (signed.kid !== key.kid) return false;
  const publicKey = key.key.type === "private" ? createPublicKey(key.key) : key.key;
  try {
    return verify(
      null,
      Buffer.from(canonicalJson(signed.anchor)),
      publicKey,
      Buffer.from(signed.sig, "base64url"),
    );
  } catch {
    return false;
  }
}

/**
 * Anchors as JSON lines appended to a file outside the database (see docs/audit.md for why).
 * Appending keeps the history for an investigator; only the tail is ever read.
 */
export function fileAnchorStore(file: string): AnchorStore {
  return {
    where: `file ${file}`,
    async append(anchor) {
      const fh = await open(file, "a", 0o600);
      try {
        await fh.write(`${JSON.stringify(anchor)}\n`);
        await fh.sync(); // an anchor that a crash loses would let the newest records go unnoticed
      } finally {
        await fh.close();
      }
    },
    async latest() {
      let fh;
      try {
        fh = await open(file, "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
      try {
        const { size } = await fh.stat();
        const length = Math.min(size, TAIL_BYTES);
        const buf = Buffer.alloc(length);
        await fh.read(buf, 0, length, size - length);
        const lines = buf.toString("utf8").split("\n");
        if (length < size) lines.shift(); // the first line of the tail may be cut
        // Several instances may append: the newest line is not always the highest seq.
        let best: SignedAnchor | undefined;
        for (const line of lines) {
          if (!line.trim()) continue;
          const parsed = parseAnchor(line);
          if (!parsed) throw new Error(`${file}: a line is not a signed audit anchor`);
          if (!best || parsed.anchor.seq > best.anchor.seq) best = parsed;
        }
        return best;
      } finally {
        await fh.close();
      }
    },
  };
}

function parseAnchor(line: string): SignedAnchor | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  const s = v as Partial<SignedAnchor> | null;
  const a = s?.anchor;
  if (
    typeof s?.kid !== "string" ||
    typeof s.sig !== "string" ||
    // The type inside the signed content keeps the organisation key's other signatures (requests,
    // attestations) from being passed off as anchors.
    a?.type !== ANCHOR_TYPE ||
    typeof a.seq !== "number" ||
    typeof a.hash !== "string" ||
    typeof a.at !== "string" ||
    typeof a.signed_at !== "string" ||
    typeof a.server_name !== "string"
  )
    return undefined;
  return s as SignedAnchor;
}

/** A verification report with the anchor it was checked against. */
export interface AnchoredReport extends AuditReport {
  anchor: (AuditAnchor & { kid: string; where: string; signature_valid: boolean }) | null;
}

/**
 * The end-to-end check: the latest anchor's signature, then the whole chain up to (and beyond)
 * it. A log with records but no anchor fails: once anchoring is on, every start writes one, so
 * its absence means the witness was removed.
 */
export async function verifyAnchored(
  audit: AuditLog,
  anchors: AnchorStore,
  key: { kid: string; key: KeyObject },
  opts: { pageSize?: number } = {},
): Promise<AnchoredReport> {
  let signed: SignedAnchor | undefined;
  try {
    signed = await anchors.latest();
  } catch (err) {
    const report = await audit.verify(opts);
    return {
      ...report,
      ok: false,
      anchor: null,
      break: { kind: "bad_anchor", seq: 0, message: (err as Error).message },
    };
  }
  if (!signed) {
    const report = await audit.verify(opts);
    if (!report.ok || report.records === 0) return { ...report, anchor: null };
    return {
      ...report,
      ok: false,
      anchor: null,
      break: {
        kind: "bad_anchor",
        seq: report.last?.seq ?? 0,
        message: `no anchor in ${anchors.where}: whether the newest records were deleted cannot be told`,
      },
    };
  }
  const valid = anchorSignatureValid(signed, key);
  const anchor = { ...signed.anchor, kid: signed.kid, where: anchors.where, signature_valid: valid };
  if (!valid) {
    const report = await audit.verify(opts);
    return {
      ...report,
      ok: false,
      anchor,
      break: {
        kind: "bad_anchor",
        seq: signed.anchor.seq,
        message: `the anchor in ${anchors.where} is not signed by the organisation key ${key.kid}`,
      },
    };
  }
  return { ...(await audit.verify({ ...opts, anchor: signed.anchor })), anchor };
}
