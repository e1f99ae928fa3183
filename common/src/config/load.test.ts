import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, loadConfigFile, parseConfig } from "./load.ts";
import { renderSample } from "./sample.ts";

const Schema = z.object({
  listen: z.object({
    port: z
      .number()
      .int()
      .describe("TCP port")
      .meta({ examples: [9100] }),
  }),
  secret: z.string().min(8).describe("A secret"),
  mode: z.enum(["a", "b"]).default("a"),
});

describe("config loading", () => {
  const dir = mkdtempSync(join(tmpdir(), "medmesh-config-"));
  afterEach(() => {
    delete process.env.MEDMESH_TEST_SECRET;
  });

  it("names the path and the problem of every invalid field", () => {
    const err = (() => {
      try {
        parseConfig(Schema, { listen: { port: "x" }, secret: "short" }, "test.yaml");
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^listen\.port: .*number/);
    expect(problems[1]).toMatch(/^secret: .*8/);
    expect((err as ConfigError).message).toContain("test.yaml");
  });

  it("resolves ${env:…} and ${file:…} secrets before validation", () => {
    writeFileSync(join(dir, "secret.txt"), "from-a-file-123\n");
    writeFileSync(join(dir, "a.yaml"), "listen: { port: 1 }\nsecret: ${file:secret.txt}\n");
    expect(loadConfigFile(Schema, join(dir, "a.yaml")).secret).toBe("from-a-file-123");

    process.env.MEDMESH_TEST_SECRET = "from-the-environment";
    writeFileSync(join(dir, "b.yaml"), "listen: { port: 1 }\nsecret: ${env:MEDMESH_TEST_SECRET}\n");
    expect(loadConfigFile(Schema, join(dir, "b.yaml")).secret).toBe("from-the-environment");
  });

  it("reports a missing secret source by field", () => {
    writeFileSync(join(dir, "c.yaml"), "listen: { port: 1 }\nsecret: ${env:MEDMESH_TEST_SECRET}\n");
    expect(() => loadConfigFile(Schema, join(dir, "c.yaml"))).toThrow(
      /secret: environment variable MEDMESH_TEST_SECRET is not set/,
    );
    writeFileSync(join(dir, "d.yaml"), "listen: { port: 1 }\nsecret: ${file:nope.txt}\n");
    expect(() => loadConfigFile(Schema, join(dir, "d.yaml"))).toThrow(
      /secret: cannot read secret file nope.txt/,
    );
  });

  it("rejects unreadable files and broken YAML clearly", () => {
    expect(() => loadConfigFile(Schema, join(dir, "missing.yaml"))).toThrow(/cannot read file/);
    writeFileSync(join(dir, "e.yaml"), "listen: [unclosed\n");
    expect(() => loadConfigFile(Schema, join(dir, "e.yaml"))).toThrow(/not valid YAML/);
  });

  it("renders a commented sample that validates against its own schema", () => {
    const sample = renderSample(Schema, "Test service");
    expect(sample).toContain("# TCP port");
    expect(sample).toContain("port: 9100");
    writeFileSync(join(dir, "sample.yaml"), sample.replace("secret: null", "secret: long-enough"));
    expect(loadConfigFile(Schema, join(dir, "sample.yaml")).listen.port).toBe(9100);
  });
});
