import { stringify } from "yaml";
import { z } from "zod";

/**
 * Renders a commented sample YAML from a zod schema, so the schema stays the one source of the
 * type, the validation and the documentation. Values come from each field's `examples` (first
 * one) or its default; descriptions become comments; for a union the first variant is shown and
 * the others are listed in the comment.
 */
export function renderSample(schema: z.ZodType, title: string): string {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const lines = [
    `# ${title}`,
    "# Generated from the schema by `npm run generate-samples`; do not edit by hand.",
    "",
  ];
  renderObject(json, 0, lines);
  return lines.join("\n") + "\n";
}

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  examples?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  items?: JsonSchema;
  const?: unknown;
  enum?: unknown[];
}

function variants(s: JsonSchema): JsonSchema[] | undefined {
  return s.oneOf ?? s.anyOf;
}

function renderObject(s: JsonSchema, indent: number, out: string[]): void {
  const pad = " ".repeat(indent);
  for (const [key, prop] of Object.entries(s.properties ?? {})) {
    const optional = !(s.required ?? []).includes(key) && prop.default === undefined;
    for (const line of comment(prop, optional)) out.push(`${pad}# ${line}`);
    const value = exampleOf(prop);
    const objectLike = value === undefined ? pickObjectVariant(prop) : undefined;
    if (objectLike) {
      out.push(`${pad}${key}:`);
      renderObject(objectLike, indent + 2, out);
    } else if (value === null && optional) {
      out.push(`${pad}# ${key}:`); // optional and nothing sensible to show: leave it commented out
    } else {
      const rendered = stringify({ [key]: value }, { lineWidth: 0 }).trimEnd();
      for (const line of rendered.split("\n")) out.push(`${pad}${line}`);
    }
  }
}

function pickObjectVariant(s: JsonSchema): JsonSchema | undefined {
  if (s.properties) return s;
  const vs = variants(s);
  return vs?.find((v) => v.properties);
}

function exampleOf(s: JsonSchema): unknown {
  if (s.examples?.length) return s.examples[0];
  if (s.default !== undefined) return s.default;
  if (s.const !== undefined) return s.const;
  if (s.properties || variants(s)?.some((v) => v.properties)) return undefined;
  if (s.enum?.length) return s.enum[0];
  return null;
}

function comment(s: JsonSchema, optional: boolean): string[] {
  const lines = s.description ? s.description.split("\n") : [];
  const vs = variants(s);
  if (vs && vs.length > 1) {
    const names = vs.map((v) => describeVariant(v)).filter((n) => n !== undefined);
    if (names.length > 1) lines.push(`One of: ${names.join(" | ")} (the first is shown).`);
  }
  if (s.enum && s.enum.length > 1) lines.push(`One of: ${s.enum.map((e) => JSON.stringify(e)).join(", ")}.`);
  if (optional) lines.push("Optional.");
  return lines;
}

function describeVariant(v: JsonSchema): string | undefined {
  const tag = Object.entries(v.properties ?? {}).find(([, p]) => p.const !== undefined);
  if (tag) return `${tag[0]}: ${String(tag[1].const)}`;
  return v.description;
}
