import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";

/**
 * The driver's OpenAPI document is gematik's TiMessengerTestTreiber.yaml (v2.3.0) itself, kept
 * unmodified with the other TI-M reference formats next to the repository (../shared/reference),
 * not a copy of ours that could drift from it. MEDMESH_TIM_OPENAPI points elsewhere.
 */
export const TIM_DRIVER_OPENAPI =
  process.env.MEDMESH_TIM_OPENAPI ??
  resolve(import.meta.dirname, "../../../shared/reference/ti-messenger/TiMessengerTestTreiber.yaml");

/**
 * The document, parsed. Some of its multi-line double-quoted descriptions continue at the key's
 * own indentation, which lenient parsers (the suite's Java one) accept and a YAML 1.2 parser does
 * not; those continuation lines are indented further in memory, the file stays as published.
 */
export function loadTimDriverOpenApi(file = TIM_DRIVER_OPENAPI): unknown {
  const out: string[] = [];
  let open = false;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (open) {
      out.push(`  ${line}`);
      if (unescapedQuotes(line) % 2 === 1) open = false;
      continue;
    }
    out.push(line);
    const m = /^\s*[\w$-]+:\s*(".*)$/.exec(line);
    if (m?.[1] && unescapedQuotes(m[1]) % 2 === 1) open = true;
  }
  return parseYaml(out.join("\n"));
}

function unescapedQuotes(s: string): number {
  return (s.replace(/\\./g, "").match(/"/g) ?? []).length;
}
