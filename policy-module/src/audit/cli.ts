import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  ConfigError,
  createAuditLog,
  createStore,
  fileAnchorStore,
  loadConfigFile,
  verifyAnchored,
  type AnchoredReport,
  type AuditBreakKind,
  type Store,
} from "@medmesh/common";
import type { StoreConfig } from "@medmesh/common/store";
import { PolicyModuleConfigSchema } from "../config.ts";

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const USAGE = `usage: medmesh audit verify (--config POLICY-MODULE.yaml | --store URL-OR-DIR [--anchor-file FILE --key JWK]) [--json] [--page-size N]
  checks the audit log's hash chain end to end, in pages, against the latest signed anchor
  --config      the policy module's config: its store, audit.anchor_file and organisation key
  --store       postgres://… URL, or the folder of an embedded (PGlite) store
  --anchor-file the anchors file; --key the organisation's JWK (public or private) that signs them
  --json        print the report as JSON (the same as GET /_medmesh/admin/v1/audit/verify)
exit code: 0 intact, 1 broken, 2 called wrongly, 3 could not check (store or anchor unavailable)
`;

const KIND: Record<AuditBreakKind, string> = {
  edited: "edited record",
  missing: "missing records in the middle",
  truncated: "newest records deleted since the anchor",
  rewritten: "records up to the anchor deleted or edited, chain re-hashed",
  bad_anchor: "anchor missing or not signed by the organisation",
};

class UsageError extends Error {}

interface Target {
  store: StoreConfig;
  anchorFile: string | undefined;
  key: { kid: string; key: KeyObject } | undefined;
}

/** `medmesh audit …`. Returns the exit code. */
export async function runAuditCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    io.stdout(USAGE);
    return 0;
  }
  let target: Target;
  let json: boolean;
  let pageSize: number | undefined;
  try {
    if (command !== "verify")
      throw new UsageError(command ? `unknown command '${command}'` : "no command given");
    const { values } = parseArgs({
      args: rest,
      options: {
        config: { type: "string" },
        store: { type: "string" },
        "anchor-file": { type: "string" },
        key: { type: "string" },
        json: { type: "boolean" },
        "page-size": { type: "string" },
      },
    });
    json = values.json === true;
    if (values["page-size"] !== undefined) {
      pageSize = Number(values["page-size"]);
      if (!Number.isInteger(pageSize) || pageSize < 1)
        throw new UsageError("--page-size must be a positive integer");
    }
    target = resolveTarget(values);
  } catch (err) {
    if (
      err instanceof UsageError ||
      err instanceof ConfigError ||
      (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      io.stderr(`${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }

  let store: Store;
  try {
    store = await createStore(target.store);
  } catch (err) {
    io.stderr(
      `cannot open the store: ${(err as Error).message}\n` +
        "(while the policy module runs on an embedded store, use GET /_medmesh/admin/v1/audit/verify on its internal listener)\n",
    );
    return 3;
  }
  let report: AnchoredReport;
  try {
    const audit = createAuditLog(store.knex);
    const opts = pageSize === undefined ? {} : { pageSize };
    report =
      target.anchorFile && target.key
        ? await verifyAnchored(audit, fileAnchorStore(target.anchorFile), target.key, opts)
        : { ...(await audit.verify(opts)), anchor: null };
  } finally {
    await store.close();
  }
  if (json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
  else io.stdout(formatReport(report, target.anchorFile === undefined));
  return report.ok ? 0 : 1;
}

function resolveTarget(v: {
  config?: string | undefined;
  store?: string | undefined;
  "anchor-file"?: string | undefined;
  key?: string | undefined;
}): Target {
  if ((v.config === undefined) === (v.store === undefined))
    throw new UsageError("give either --config or --store");
  if (v.config !== undefined) {
    if (v["anchor-file"] !== undefined || v.key !== undefined)
      throw new UsageError("--anchor-file and --key come from the config with --config");
    const config = loadConfigFile(PolicyModuleConfigSchema, v.config);
    const keyFile = config.organisation?.signing_key_file;
    return {
      store: config.store,
      anchorFile: config.audit.anchor_file,
      key: keyFile ? loadKey(keyFile) : undefined,
    };
  }
  if ((v["anchor-file"] === undefined) !== (v.key === undefined))
    throw new UsageError("--anchor-file and --key go together");
  const store: StoreConfig = /^postgres(ql)?:\/\//.test(v.store ?? "")
    ? { type: "postgres", url: v.store ?? "", pool_max: 2 }
    : { type: "pglite", data_dir: v.store ?? "" };
  return { store, anchorFile: v["anchor-file"], key: v.key ? loadKey(v.key) : undefined };
}

/** The organisation's JWK: the private one (as the service holds it) or its public half. */
function loadKey(file: string): { kid: string; key: KeyObject } {
  let jwk: JsonWebKey & { kid?: unknown };
  try {
    jwk = JSON.parse(readFileSync(file, "utf8")) as JsonWebKey & { kid?: unknown };
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.kid !== "string")
    throw new UsageError(`${file}: not an Ed25519 JWK with a kid`);
  const key = jwk.d
    ? createPrivateKey({ key: jwk, format: "jwk" })
    : createPublicKey({ key: jwk, format: "jwk" });
  return { kid: jwk.kid, key };
}

/** What was checked, then the verdict: an operator must see that it looked at what they expect. */
export function formatReport(r: AnchoredReport, anchoringOff: boolean): string {
  const lines = [
    r.first && r.last
      ? `records: ${String(r.records)} checked, seq ${String(r.first.seq)} (${r.first.at}) to seq ${String(r.last.seq)} (${r.last.at})`
      : `records: ${String(r.records)} checked`,
    `head:    ${r.last ? `seq ${String(r.last.seq)} sha256 ${r.last.hash}${r.ok ? "" : " (as far as checked)"}` : "none (empty log)"}`,
    `anchor:  ${
      r.anchor
        ? `seq ${String(r.anchor.seq)} sha256 ${r.anchor.hash}, signed ${r.anchor.signed_at} by key ${r.anchor.kid} (${r.anchor.signature_valid ? "signature valid" : "SIGNATURE INVALID"}), from ${r.anchor.where}`
        : anchoringOff
          ? "none (no anchor file given: deleting the newest records would go unnoticed)"
          : "none found"
    }`,
    `read:    ${String(r.pages)} page(s)`,
    r.ok
      ? "result:  ok, the chain is intact" + (r.anchor ? " up to and beyond the anchor" : "")
      : `result:  BROKEN at seq ${String(r.break?.seq)}: ${r.break ? KIND[r.break.kind] : "?"} (${r.break?.message ?? ""})`,
  ];
  return `${lines.join("\n")}\n`;
}
