import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";

/** A config that cannot be used. The message lists every problem, each with its path in the file. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`Invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

const SECRET_REF = /^\$\{(env|file):([^}]+)\}$/;

/**
 * Secrets never need to sit in the YAML itself: a string value `${env:NAME}` is replaced by that
 * environment variable and `${file:/path}` by the file's content (trailing newline trimmed; a
 * relative path is relative to the config file). Done before validation so errors name the field.
 */
export function resolveSecretRefs(
  value: unknown,
  baseDir: string,
  path: string[],
  problems: string[],
): unknown {
  if (typeof value === "string") {
    const m = SECRET_REF.exec(value);
    if (!m) return value;
    const [, kind, ref] = m as unknown as [string, "env" | "file", string];
    if (kind === "env") {
      const v = process.env[ref];
      if (v === undefined) problems.push(`${fmtPath(path)}: environment variable ${ref} is not set`);
      return v;
    }
    try {
      return readFileSync(resolve(baseDir, ref), "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      problems.push(`${fmtPath(path)}: cannot read secret file ${ref}: ${(err as Error).message}`);
      return undefined;
    }
  }
  if (Array.isArray(value))
    return value.map((v, i) => resolveSecretRefs(v, baseDir, [...path, String(i)], problems));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, resolveSecretRefs(v, baseDir, [...path, k], problems)]),
    );
  }
  return value;
}

function fmtPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "(root)" : path.map(String).join(".");
}

/** Validate an already-parsed object; `source` names where it came from in error messages. */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  raw: unknown,
  source: string,
  baseDir = ".",
): z.output<S> {
  const problems: string[] = [];
  const resolved = resolveSecretRefs(raw ?? {}, baseDir, [], problems);
  if (problems.length) throw new ConfigError(source, problems);
  const result = schema.safeParse(resolved);
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((i) => `${fmtPath(i.path)}: ${i.message}`),
    );
  }
  return result.data;
}

export function loadConfigFile<S extends z.ZodType>(schema: S, file: string): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message}`]);
  }
  return parseConfig(schema, raw, file, dirname(resolve(file)));
}
