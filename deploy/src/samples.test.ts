import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { loadConfigFile } from "@medmesh/common";
import { REPO_ROOT } from "./network.ts";
import { CONFIG_KINDS, driftedSamples } from "./samples.ts";

const run = promisify(execFile);
const CLI = join(REPO_ROOT, "deploy", "src", "cli.ts");
const dir = mkdtempSync(join(tmpdir(), "medmesh-samples-"));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("sample configs", () => {
  it("match what the schemas render (run `npm run generate-samples` after a schema change)", () => {
    expect(driftedSamples(join(REPO_ROOT, "config"))).toEqual([]);
  });

  it("detect drift in a changed sample", () => {
    writeFileSync(join(dir, "deployment.sample.yaml"), "data_dir: somewhere-else\n");
    expect(driftedSamples(dir)).toContain("deployment.sample.yaml");
  });

  it.each(CONFIG_KINDS.map((k) => [k.sample, k] as const))("%s is itself a valid config", (_name, kind) => {
    const secrets = join(dir, "secret");
    writeFileSync(secrets, "postgres://medmesh:pw@db/medmesh\n");
    // Samples reference secrets in /run/secrets; point those at a temp file for this check.
    const text = loadConfigText(kind.sample).replaceAll(/\$\{file:[^}]+\}/g, `\${file:${secrets}}`);
    const file = join(dir, kind.sample);
    writeFileSync(file, text);
    expect(() => loadConfigFile(kind.schema, file)).not.toThrow();
  });

  it.each(["local-network.yaml", "tim-network.yaml"])("the network config %s validates", async (name) => {
    const res = await cli("validate-config", join(REPO_ROOT, "config", name));
    expect(res).toMatchObject({ code: 0 });
    expect(res.stdout).toContain("valid deployment config");
  });

  it("validate-config rejects a bad config, naming each field and its problem", async () => {
    const bad = join(dir, "policy-module.yaml");
    writeFileSync(
      bad,
      "homeserver: { server_name: 'not a server', url: 'ftp://x' }\nappservice: { registration_file: reg.yaml }\nlisten: { port: 70000 }\nstore: { type: sqlite }\n",
    );
    const res = await cli("validate-config", bad);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`Invalid configuration in ${bad}`);
    expect(res.stderr).toMatch(/homeserver\.server_name: not a valid Matrix server name/);
    expect(res.stderr).toMatch(/homeserver\.url: /);
    expect(res.stderr).toMatch(/listen\.port: .*65535/);
    expect(res.stderr).toMatch(/store\.type: /);
  });
});

function loadConfigText(sample: string): string {
  return readFileSync(join(REPO_ROOT, "config", sample), "utf8");
}
