import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runTrustCli } from "./cli.ts";

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runTrustCli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

describe("medmesh trust", () => {
  it("creates, signs, verifies and updates a list; refuses the wrong operator key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "medmesh-trust-"));
    const f = (name: string): string => join(dir, name);
    const keygen = await run("keygen", "--out", f("op.jwk.json"));
    expect(keygen.code).toBe(0);
    expect(statSync(f("op.jwk.json")).mode & 0o777).toBe(0o600);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(f("op.pub.json"), keygen.out);
    expect((JSON.parse(keygen.out) as { d?: string }).d).toBeUndefined(); // only the public half printed

    expect((await run("init", "--network", "nl-gp", "--out", f("list.json"))).code).toBe(0);
    expect((await run("keygen", "--out", f("org-a.jwk.json"))).code).toBe(0);
    expect(
      (
        await run(
          "add",
          "--list",
          f("list.json"),
          "--server",
          "a.example",
          "--name",
          "Hospital A",
          "--identifier",
          "URA-1",
          "--key",
          f("org-a.jwk.json"),
        )
      ).code,
    ).toBe(0);
    expect(
      (
        await run(
          "add",
          "--list",
          f("list.json"),
          "--server",
          "b.example",
          "--name",
          "GP B",
          "--identifier",
          "URA-2",
        )
      ).code,
    ).toBe(0);
    const signed = await run(
      "sign",
      "--list",
      f("list.json"),
      "--key",
      f("op.jwk.json"),
      "--out",
      f("list.jws"),
    );
    expect(signed).toMatchObject({ code: 0, out: expect.stringMatching(/sequence 2/) as unknown });
    const listFile = readFileSync(f("list.json"), "utf8");
    expect(listFile).not.toContain('"d"'); // the organisation's private key never enters the list

    const verified = await run("verify", "--jws", f("list.jws"), "--operator-key", f("op.pub.json"));
    expect(verified.code).toBe(0);
    expect(verified.out).toMatch(/network nl-gp, sequence 2/);
    expect(verified.out).toMatch(/a\.example\s+Hospital A \(URA-1\)/);

    const other = await run("keygen", "--out", f("other.jwk.json"));
    writeFileSync(f("other.pub.json"), other.out);
    const wrong = await run("verify", "--jws", f("list.jws"), "--operator-key", f("other.pub.json"));
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/invalid trust list: signed with unknown key/);

    expect((await run("remove", "--list", f("list.json"), "--server", "b.example")).code).toBe(0);
    expect(
      (await run("sign", "--list", f("list.json"), "--key", f("op.jwk.json"), "--out", f("list.jws"))).out,
    ).toMatch(/sequence 3/);
    expect(
      (await run("verify", "--jws", f("list.jws"), "--operator-key", f("op.pub.json"))).out,
    ).not.toContain("b.example");
  });

  it("answers usage errors with exit code 2 and the usage text", async () => {
    expect(await run("frobnicate")).toMatchObject({
      code: 2,
      err: expect.stringMatching(/unknown command 'frobnicate'[\s\S]*usage:/) as unknown,
    });
    expect((await run("sign", "--list", "x.json")).err).toMatch(/--key is required/);
    expect((await run("init", "--bogus")).code).toBe(2);
  });
});
