import { parseArgs } from "node:util";
import type { CliIo } from "../trust/index.ts";
import { ENDPOINTS, listenerOf, RULES, type EndpointEntry } from "./endpoints.ts";

const USAGE = `usage: medmesh proxy <command> [options]
  endpoints [--json]   the proxy's endpoint table: everything it forwards or refuses on purpose;
                       any other endpoint is answered 404 M_UNRECOGNIZED
  help                 this text
`;

interface Row {
  listener: string;
  family: string;
  methods: string[];
  path: string;
  verdict: "allow" | "deny";
  rule?: string;
  reason: string;
  served: string;
  /** Only with (true) or without (false) single sign-on configured. */
  sso?: boolean;
}

function row(e: EndpointEntry): Row {
  const g = e.guard;
  const common = {
    listener: listenerOf(e),
    family: e.family,
    methods: [...e.methods],
    path: e.path,
    ...(e.sso === undefined ? {} : { sso: e.sso }),
  };
  return "deny" in g
    ? { ...common, verdict: "deny", reason: g.deny, served: e.served }
    : { ...common, verdict: "allow", rule: g.rule, reason: RULES[g.rule], served: e.served };
}

/** `medmesh proxy …`. Returns the exit code: 0 ok, 2 called wrongly. */
export function runProxyCli(argv: string[], io: CliIo): number {
  const [command, ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    io.stdout(USAGE);
    return 0;
  }
  if (command !== "endpoints") {
    io.stderr(`${command === undefined ? "no command given" : `unknown command '${command}'`}\n${USAGE}`);
    return 2;
  }
  let json: boolean;
  try {
    json = parseArgs({ args: rest, options: { json: { type: "boolean" } } }).values.json ?? false;
  } catch (err) {
    io.stderr(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const rows = ENDPOINTS.map(row);
  if (json) {
    io.stdout(JSON.stringify(rows, null, 2) + "\n");
    return 0;
  }
  const cells = rows.map((r) => [
    r.listener,
    r.family,
    r.methods.join(","),
    (r.verdict === "allow" ? `allow:${r.rule ?? ""}` : "deny") +
      (r.sso === undefined ? "" : r.sso ? " [sso]" : " [no sso]"),
    r.path,
    r.verdict === "deny" ? r.reason : "",
  ]);
  const header = ["LISTENER", "FAMILY", "METHODS", "VERDICT", "PATH", "REASON"];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? "").length)));
  const line = (c: string[]): string =>
    c
      .map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const allowed = rows.filter((r) => r.verdict === "allow").length;
  io.stdout(
    [
      line(header),
      ...cells.map(line),
      "",
      `${String(rows.length)} entries: ${String(allowed)} allowed, ${String(rows.length - allowed)} refused on purpose; everything else is answered 404 M_UNRECOGNIZED.`,
      "[sso] / [no sso]: only where the organisation has (has not) single sign-on configured (proxy.single_sign_on).",
      "rules:",
      ...Object.entries(RULES).map(([id, what]) => `  ${id.padEnd(20)} ${what}`),
      "",
    ].join("\n"),
  );
  return 0;
}
