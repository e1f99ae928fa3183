import type { Logger } from "pino";
import { Refusal, type ProxyContext } from "./context.ts";
import { ENDPOINTS, type EndpointEntry, type Family, type Listener } from "./endpoint-table.ts";

export {
  ENDPOINTS,
  FAMILIES,
  RULES,
  type EndpointEntry,
  type Family,
  type Listener,
} from "./endpoint-table.ts";

const LISTENER_OF: Record<Family, Listener | undefined> = {
  client: "client",
  media: "client",
  synapse: "client",
  federation: "federation",
  key: "federation",
  medmesh: undefined, // on both: each entry names its listener
};

export function listenerOf(e: EndpointEntry): Listener {
  const listener = e.listener ?? LISTENER_OF[e.family];
  if (!listener) throw new Error(`endpoint ${e.path} needs a listener`);
  return listener;
}

/** A path template as a regular expression over the raw (still percent-encoded) path. */
export function templateRegExp(template: string): RegExp {
  let out = "";
  for (let i = 0; i < template.length; i++) {
    const ch = template.charAt(i);
    if (ch === "{") {
      const end = template.indexOf("}", i);
      if (end < 0) throw new Error(`unclosed {} in ${template}`);
      const name = template.slice(i + 1, end);
      out += name.endsWith("...") ? ".*" : name.endsWith("?") ? "[^/]*" : "[^/]+";
      i = end;
    } else if (ch === "(") out += "(?:";
    else if (ch === "[") out += "(?:";
    else if (ch === "]") out += ")?";
    else if (ch === ")" || ch === "|") out += ch;
    else out += ch.replace(/[.*+?^$\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/**
 * Concrete paths a template matches, one per choice of its alternatives and optional parts;
 * parameters become "x" (and "" where they may be empty). Used by the tests.
 */
export function templateSamples(template: string): string[] {
  const parse = (s: string, i: number, stop: string): { alts: string[][]; end: number } => {
    // A sequence of alternatives; each alternative a list of possible expansions so far.
    const alts: string[][] = [];
    let current = [""];
    let j = i;
    const append = (choices: string[]): void => {
      current = current.flatMap((a) => choices.map((b) => a + b));
    };
    while (j < s.length && !stop.includes(s.charAt(j))) {
      const ch = s.charAt(j);
      if (ch === "(" || ch === "[") {
        const inner = parse(s, j + 1, ch === "(" ? ")" : "]");
        const choices = inner.alts.flat();
        append(ch === "[" ? ["", ...choices] : choices);
        j = inner.end + 1;
      } else if (ch === "|") {
        alts.push(current);
        current = [""];
        j++;
      } else if (ch === "{") {
        const end = s.indexOf("}", j);
        append(s.charAt(end - 1) === "?" ? ["x", ""] : ["x"]);
        j = end + 1;
      } else {
        append([ch]);
        j++;
      }
    }
    alts.push(current);
    return { alts, end: j };
  };
  return [...new Set(parse(template, 0, "").alts.flat())];
}

export interface CompiledEntry {
  entry: EndpointEntry;
  listener: Listener;
  pattern: RegExp;
}

export interface EndpointMatch {
  entry: EndpointEntry;
  /** The path is known, but not with this method. */
  wrongMethod: boolean;
}

export interface EndpointTable {
  readonly entries: readonly CompiledEntry[];
  lookup(listener: Listener, method: string, rawPath: string): EndpointMatch | undefined;
}

/** What the organisation has configured that changes which endpoints Synapse serves. */
export interface EndpointFeatures {
  /** Single sign-on with the organisation's identity provider (`proxy.single_sign_on`). */
  sso: boolean;
  /** A TI-Messenger profile (`profile: tim-pro | tim-epa`, docs/tim-profile.md). */
  tim?: boolean;
}

/** The entries that apply with these features. */
export function endpointsFor(
  features: EndpointFeatures,
  entries: readonly EndpointEntry[] = ENDPOINTS,
): EndpointEntry[] {
  return entries.filter(
    (e) =>
      (e.sso === undefined || e.sso === features.sso) &&
      (e.tim === undefined || e.tim === (features.tim ?? false)),
  );
}

/**
 * Deny entries win over allow entries (a refused corner inside an allowed family); otherwise the
 * first entry listed that matches. OPTIONS (CORS pre-flight) is known wherever the path is.
 * Entries for features the organisation has not configured (or has) are left out.
 */
export function compileEndpoints(
  entries: readonly EndpointEntry[] = ENDPOINTS,
  features: EndpointFeatures = { sso: false },
): EndpointTable {
  const compiled = endpointsFor(features, entries).map((entry) => ({
    entry,
    listener: listenerOf(entry),
    pattern: templateRegExp(entry.path),
  }));
  const ordered = [
    ...compiled.filter((c) => "deny" in c.entry.guard),
    ...compiled.filter((c) => !("deny" in c.entry.guard)),
  ];
  const byListener = new Map<Listener, CompiledEntry[]>();
  for (const c of ordered) byListener.set(c.listener, [...(byListener.get(c.listener) ?? []), c]);
  return {
    entries: compiled,
    lookup(listener, method, rawPath) {
      let pathOnly: EndpointEntry | undefined;
      for (const c of byListener.get(listener) ?? []) {
        if (!c.pattern.test(rawPath)) continue;
        if (method === "OPTIONS" || c.entry.methods.includes(method))
          return { entry: c.entry, wrongMethod: false };
        pathOnly ??= c.entry;
      }
      return pathOnly ? { entry: pathOnly, wrongMethod: true } : undefined;
    },
  };
}

const LOG_WINDOW_MS = 10_000;
const LOG_BUDGET = 50;

/** The log message of an unknown-endpoint refusal; the test harness looks for it. */
export const UNKNOWN_ENDPOINT_LOG = "unknown endpoint refused";

/**
 * The proxy's default deny: a request reaches the policy rules (and then Synapse) only if the
 * endpoint table lists it. Unknown endpoints are logged at warn level (method and path, never the
 * query string, which may hold an access token) so a client that needs a missing entry shows up.
 */
export function endpointGuard(log: Logger, table: EndpointTable = compileEndpoints()) {
  // A flood of junk must not become a flood of log lines: a budget per window, then a count.
  const window = { start: 0, logged: 0, suppressed: 0 };
  const warn = (fields: Record<string, string>, now = Date.now()): void => {
    if (now - window.start >= LOG_WINDOW_MS) {
      if (window.suppressed)
        log.warn({ suppressed: window.suppressed }, `${UNKNOWN_ENDPOINT_LOG} (more, not logged)`);
      Object.assign(window, { start: now, logged: 0, suppressed: 0 });
    }
    if (window.logged++ < LOG_BUDGET) log.warn(fields, UNKNOWN_ENDPOINT_LOG);
    else window.suppressed++;
  };
  return {
    admit(ctx: ProxyContext): EndpointEntry {
      const path = ctx.rawPath;
      const found = table.lookup(ctx.listener, ctx.method, path);
      if (!found || found.wrongMethod) {
        warn({ listener: ctx.listener, method: ctx.method, path });
        throw found
          ? new Refusal(405, "M_UNRECOGNIZED", `${ctx.method} is not served for this endpoint`)
          : new Refusal(
              404,
              "M_UNRECOGNIZED",
              "Unrecognized request: this server does not serve this endpoint",
            );
      }
      const guard = found.entry.guard;
      if ("deny" in guard) {
        throw new Refusal(guard.status ?? 404, guard.errcode ?? "M_UNRECOGNIZED", guard.deny);
      }
      return found.entry;
    },
  };
}
