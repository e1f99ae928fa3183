import { readFileSync, statSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { z } from "zod";
import {
  RegistryUnavailableError,
  type NumberCheck,
  type RegistryAdapter,
  type RegistryRecord,
  type RegistrationStatus,
} from "../types.ts";
import { partnerNameForms } from "../name-match.ts";

/*
 * A registry extract: a file an organisation or regional network imports when no registry can be asked
 * online (closed networks, registries of other countries) — and the embedded default of the local demo
 * network. CSV with the header
 *   registry,number,initials,prefix,surname,given,profession,specialisms,status
 * (specialisms separated by ";"; optional columns partner_prefix,partner_surname), or JSON { registry?: string, records: [{ same fields }] }.
 * The file is re-read when its modification time or size changes, so an administrator can replace it
 * without restarting anything.
 */

export class RegistryExtractError extends Error {
  override name = "RegistryExtractError";
}

const COLUMNS = [
  "registry",
  "number",
  "initials",
  "prefix",
  "surname",
  "given",
  "profession",
  "specialisms",
  "status",
] as const;
/** Columns a file may add: the partner's surname the person uses (matched in the forms Dutch name use allows). */
const OPTIONAL_COLUMNS = ["partner_prefix", "partner_surname"] as const;
type Column = (typeof COLUMNS)[number] | (typeof OPTIONAL_COLUMNS)[number];

/** Separators people type in numbers; what remains must be letters and digits. */
const SEPARATORS = /[\s.\-/]/g;

export function normaliseExtractNumber(number: string): NumberCheck {
  const n = number.replace(SEPARATORS, "").toUpperCase();
  if (n === "") return { ok: false, reason: "No registration number was given" };
  if (!/^[0-9A-Z]+$/.test(n))
    return { ok: false, reason: "A registration number contains only letters and digits" };
  return { ok: true, normalised: n };
}

const optionalText = z
  .string()
  .transform((s) => s.trim())
  .optional()
  .transform((s) => (s === "" ? undefined : s));

const rowSchema = z.object({
  registry: optionalText,
  number: z.string({ error: "must be text (in JSON, put the number in quotes)" }).transform((s, ctx) => {
    const n = normaliseExtractNumber(s);
    if (!n.ok) {
      ctx.addIssue({ code: "custom", message: n.reason });
      return z.NEVER;
    }
    return n.normalised;
  }),
  initials: optionalText,
  prefix: optionalText,
  surname: z
    .string()
    .transform((s) => s.trim())
    .pipe(z.string().min(1, "the surname is empty")),
  given: optionalText,
  partner_prefix: optionalText,
  partner_surname: optionalText,
  profession: z
    .string()
    .transform((s) => s.trim())
    .pipe(z.string().min(1, "the profession is empty")),
  specialisms: z
    .union([z.string().transform((s) => s.split(";")), z.array(z.string())])
    .optional()
    .transform((list) => (list ?? []).map((s) => s.trim()).filter((s) => s !== "")),
  status: z
    .string()
    .transform((s) => s.trim().toLowerCase())
    .pipe(
      z.enum(["active", "suspended", "struck_off"], {
        error: 'the status must be "active", "suspended" or "struck_off"',
      }),
    ),
});

const jsonSchema = z.object({
  registry: z.string().optional(),
  records: z.array(z.unknown()),
});

interface Row {
  /** "line 4" or "record 3": where an administrator finds the row. */
  where: string;
  values: unknown;
}

/** RFC 4180-style: commas, quoted fields with doubled quotes, CRLF or LF, newlines inside quotes. */
function parseCsv(
  text: string,
  file: string,
): { header: string[]; rows: { line: number; cells: string[] }[] } {
  const records: { line: number; cells: string[] }[] = [];
  let cells: string[] = [];
  let cell = "";
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let fieldStarted = false;
  const endRecord = (): void => {
    cells.push(cell);
    // Blank lines carry no record.
    if (!(cells.length === 1 && cells[0]?.trim() === "")) records.push({ line: recordLine, cells });
    cells = [];
    cell = "";
    fieldStarted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text.charAt(i);
    if (quoted) {
      if (ch === '"') {
        if (text.charAt(i + 1) === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === "\n") line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"' && !fieldStarted) {
      quoted = true;
      fieldStarted = true;
    } else if (ch === '"') {
      throw new RegistryExtractError(
        `${file}: line ${line}: a quote inside an unquoted field; quote the whole field`,
      );
    } else if (ch === ",") {
      cells.push(cell);
      cell = "";
      fieldStarted = false;
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text.charAt(i + 1) === "\n") i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      cell += ch;
      if (ch !== " " && ch !== "\t") fieldStarted = true;
    }
  }
  if (quoted) throw new RegistryExtractError(`${file}: line ${recordLine}: a quoted field is never closed`);
  if (cell !== "" || cells.length > 0) endRecord();
  const [head, ...rows] = records;
  if (!head) throw new RegistryExtractError(`${file}: the file is empty; expected a header row`);
  return { header: head.cells.map((c) => c.trim().toLowerCase()), rows };
}

function csvRows(text: string, file: string): Row[] {
  const { header, rows } = parseCsv(text, file);
  const unknown = header.filter(
    (h) =>
      !(COLUMNS as readonly string[]).includes(h) && !(OPTIONAL_COLUMNS as readonly string[]).includes(h),
  );
  const missing = COLUMNS.filter((c) => !header.includes(c));
  if (unknown.length > 0 || missing.length > 0) {
    throw new RegistryExtractError(
      `${file}: line 1: the header must be ${COLUMNS.join(",")}` +
        (missing.length ? `; missing: ${missing.join(", ")}` : "") +
        (unknown.length ? `; unknown: ${unknown.join(", ")}` : ""),
    );
  }
  return rows.map(({ line, cells }) => {
    if (cells.length !== header.length) {
      throw new RegistryExtractError(
        `${file}: line ${line}: ${cells.length} fields where the header has ${header.length}`,
      );
    }
    const values: Partial<Record<Column, string>> = {};
    header.forEach((h, i) => {
      values[h as Column] = cells[i] ?? "";
    });
    return { where: `line ${line}`, values };
  });
}

function jsonRows(text: string, file: string): { registry: string | undefined; rows: Row[] } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new RegistryExtractError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const top = jsonSchema.safeParse(data);
  if (!top.success) {
    throw new RegistryExtractError(`${file}: expected { "registry"?: string, "records": [ … ] }`);
  }
  return {
    registry: top.data.registry?.trim() || undefined,
    rows: top.data.records.map((values, i) => ({ where: `record ${i + 1}`, values })),
  };
}

function fullName(r: {
  initials?: string | undefined;
  given?: string | undefined;
  prefix?: string | undefined;
  surname: string;
}): string {
  return [r.given ?? r.initials, r.prefix, r.surname].filter((p) => p !== undefined).join(" ");
}

interface Loaded {
  registry: string;
  records: Map<string, RegistryRecord>;
}

/** Parses and checks a whole extract; throws RegistryExtractError naming file, row and field. */
export function parseRegistryExtract(text: string, file: string): Loaded {
  const body = text.replace(/^\uFEFF/, "");
  const isJson = body.trimStart().startsWith("{");
  const { registry: declared, rows } = isJson
    ? jsonRows(body, file)
    : { registry: undefined, rows: csvRows(body, file) };

  let registry = declared;
  let registryWhere = "the file";
  const records = new Map<string, RegistryRecord>();
  const seen = new Map<string, string>();
  for (const row of rows) {
    const parsed = rowSchema.safeParse(row.values);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join(".") || "record";
      const given =
        typeof row.values === "object" && row.values !== null ? (row.values as Record<string, unknown>) : {};
      const problem = issue?.path.length === 1 && given[field] === undefined ? "is missing" : issue?.message;
      throw new RegistryExtractError(`${file}: ${row.where}, field "${field}": ${problem ?? "invalid"}`);
    }
    const r = parsed.data;
    if (r.registry !== undefined) {
      if (registry === undefined) {
        registry = r.registry;
        registryWhere = row.where;
      } else if (r.registry.toUpperCase() !== registry.toUpperCase()) {
        throw new RegistryExtractError(
          `${file}: ${row.where}, field "registry": "${r.registry}" differs from "${registry}" (${registryWhere}); one extract holds one registry`,
        );
      }
    }
    // The number itself stays out of the message: registration numbers are never logged.
    const earlier = seen.get(r.number);
    if (earlier)
      throw new RegistryExtractError(`${file}: ${row.where}, field "number": the same number as ${earlier}`);
    seen.set(r.number, row.where);
    records.set(r.number, {
      registry: "",
      number: r.number,
      name: {
        full: fullName(r),
        surname: r.surname,
        ...(r.initials !== undefined ? { initials: r.initials } : {}),
        ...(r.prefix !== undefined ? { prefix: r.prefix } : {}),
        ...(r.given !== undefined ? { given: r.given } : {}),
        ...(r.partner_surname !== undefined
          ? {
              alternates: partnerNameForms(
                { prefix: r.prefix, surname: r.surname },
                { prefix: r.partner_prefix, surname: r.partner_surname },
              ),
            }
          : {}),
      },
      profession: r.profession,
      specialisms: r.specialisms,
      status: r.status satisfies RegistrationStatus,
    });
  }
  const name = registry ?? "extract";
  for (const rec of records.values()) rec.registry = name;
  return { registry: name, records };
}

function fingerprint(s: { mtimeMs: number; size: number }): string {
  return `${s.mtimeMs}:${s.size}`;
}

/**
 * Loads an extract now (so a broken file fails at start-up) and serves lookups from memory. A later
 * change to the file is picked up on the next lookup; if the new version is broken, lookups fail as
 * "malformed" (the check stays pending) rather than silently serving the old version, which might still
 * list someone the new extract struck off.
 */
export function loadRegistryExtract(file: string): RegistryAdapter {
  let loaded = parseRegistryExtract(readFileSync(file, "utf8"), file);
  let version = fingerprint(statSync(file));
  let reloading: Promise<void> | undefined;

  const refresh = async (): Promise<void> => {
    let current: string;
    try {
      current = fingerprint(await stat(file));
    } catch (err) {
      throw new RegistryUnavailableError("fault", `Registry extract ${file} cannot be read`, { cause: err });
    }
    if (current === version) return;
    try {
      const next = parseRegistryExtract(await readFile(file, "utf8"), file);
      if (next.registry.toUpperCase() !== loaded.registry.toUpperCase()) {
        throw new RegistryExtractError(
          `${file}: the extract now holds registry "${next.registry}" instead of "${loaded.registry}"; restart to change registries`,
        );
      }
      loaded = next;
      version = current;
    } catch (err) {
      if (err instanceof RegistryExtractError)
        throw new RegistryUnavailableError("malformed", err.message, { cause: err });
      throw new RegistryUnavailableError("fault", `Registry extract ${file} cannot be read`, { cause: err });
    }
  };

  return {
    // Fixed at start-up: the registry map of the verifier is keyed by this name.
    registry: loaded.registry,
    validateNumber: normaliseExtractNumber,
    async lookup(number) {
      // Concurrent lookups share one re-read.
      reloading ??= refresh().finally(() => {
        reloading = undefined;
      });
      await reloading;
      const n = normaliseExtractNumber(number);
      return n.ok ? loaded.records.get(n.normalised) : undefined;
    },
  };
}

/**
 * The configured extract, never stopping the service: a file that is broken (or missing) at
 * start-up is logged, and checks against its registry (named in the config) stay pending with the
 * reason until the file is fixed — it is tried again on every look-up. Without a configured name
 * the registry cannot be known from a broken file: it is left out, and the log says so.
 */
export function openRegistryExtract(
  config: { file: string; registry?: string | undefined },
  log: { error(obj: object, msg: string): void },
): RegistryAdapter | undefined {
  const named = config.registry?.toUpperCase();
  const matching = (a: RegistryAdapter): RegistryAdapter => {
    if (named !== undefined && a.registry.toUpperCase() !== named)
      throw new RegistryExtractError(
        `${config.file} holds registry "${a.registry}", but registries.extract.registry says "${String(config.registry)}"`,
      );
    return a;
  };
  try {
    return matching(loadRegistryExtract(config.file));
  } catch (err) {
    const reason = (err as Error).message;
    if (config.registry === undefined) {
      log.error(
        { err },
        "the registry extract cannot be loaded and registries.extract.registry is not set: its registry is left out until a restart",
      );
      return undefined;
    }
    log.error({ err }, `the registry extract cannot be loaded: checks against ${named} stay pending`);
    let loaded: RegistryAdapter | undefined;
    let failure = reason;
    return {
      registry: config.registry,
      validateNumber: normaliseExtractNumber,
      async lookup(number, o) {
        if (!loaded) {
          try {
            loaded = matching(loadRegistryExtract(config.file));
          } catch (again) {
            failure = (again as Error).message;
          }
        }
        if (!loaded) throw new RegistryUnavailableError("malformed", `Registry extract unusable: ${failure}`);
        return loaded.lookup(number, o);
      },
    };
  }
}
