import type { JsonWebKey } from "node:crypto";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runTrustCli } from "./cli.ts";
import { verifyTrustList } from "./trust-list.ts";

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runTrustCli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

function tempDir(): (name: string) => string {
  const dir = mkdtempSync(join(tmpdir(), "medmesh-trust-"));
  return (name) => join(dir, name);
}

/** keygen, with the printed public JWK saved next to the private key file. */
async function keygen(f: (name: string) => string, name: string): Promise<{ kid: string }> {
  const result = await run("keygen", "--out", f(`${name}.jwk.json`));
  expect(result).toMatchObject({ code: 0, err: "" });
  writeFileSync(f(`${name}.pub.json`), result.out);
  return JSON.parse(result.out) as { kid: string };
}

const sequenceOf = (jws: string): number =>
  (JSON.parse(Buffer.from(String(jws.split(".")[1]), "base64url").toString()) as { sequence: number })
    .sequence;

describe("medmesh trust", () => {
  it("creates, signs, verifies and updates a list; refuses the wrong operator key", async () => {
    const f = tempDir();
    const op = await keygen(f, "op");
    expect(statSync(f("op.jwk.json")).mode & 0o777).toBe(0o600);
    const pub = JSON.parse(readFileSync(f("op.pub.json"), "utf8")) as Record<string, unknown>;
    expect(pub).toMatchObject({ kty: "OKP", crv: "Ed25519", kid: op.kid });
    expect(pub.d).toBeUndefined(); // only the public half printed
    expect(JSON.parse(readFileSync(f("op.jwk.json"), "utf8"))).toMatchObject({
      kid: op.kid,
      d: expect.any(String) as unknown,
    });

    expect(await run("init", "--network", "nl-gp-utrecht", "--out", f("list.json"))).toMatchObject({
      code: 0,
      err: "",
    });
    expect(JSON.parse(readFileSync(f("list.json"), "utf8"))).toMatchObject({
      version: 1,
      network: "nl-gp-utrecht",
      sequence: 1,
      organisations: [],
    });

    const orgA = await keygen(f, "org-a");
    const addA = await run(
      "add",
      ...["--list", f("list.json"), "--server", "a.example", "--name", "Hospital A"],
      ...["--identifier", "URA-1", "--key", f("org-a.jwk.json")],
    );
    expect(addA).toMatchObject({ code: 0, out: expect.stringMatching(/added a\.example/) as unknown });
    const addB = await run(
      "add",
      ...["--list", f("list.json"), "--server", "b.example:8448", "--name", "GP B", "--identifier", "AGB-2"],
    );
    expect(addB.code).toBe(0);
    // The organisation's private key file was given, but only its public half enters the list.
    expect(readFileSync(f("list.json"), "utf8")).not.toContain('"d"');

    const signed = await run(
      "sign",
      "--list",
      f("list.json"),
      "--key",
      f("op.jwk.json"),
      "--out",
      f("list.jws"),
    );
    expect(signed).toMatchObject({ code: 0, out: expect.stringMatching(/sequence 2 with /) as unknown });
    const jws = readFileSync(f("list.jws"), "utf8");
    const payload = verifyTrustList(jws, [
      JSON.parse(readFileSync(f("op.pub.json"), "utf8")) as JsonWebKey,
    ]).payload;
    expect(payload.organisations[0]?.attestation_keys.map((k) => k.kid)).toEqual([orgA.kid]);
    // 30 days by default
    expect(Date.parse(payload.expires_at) - Date.parse(payload.issued_at)).toBe(30 * 86_400_000);

    const verified = await run("verify", "--jws", f("list.jws"), "--operator-key", f("op.pub.json"));
    expect(verified).toMatchObject({ code: 0, err: "" });
    expect(verified.out).toMatch(/network nl-gp-utrecht, sequence 2, expires \S+, signed by /);
    expect(verified.out).toMatch(/a\.example\s+Hospital A \(URA-1\)/);
    expect(verified.out).toMatch(/b\.example:8448\s+GP B \(AGB-2\)/);

    await keygen(f, "other");
    const wrong = await run("verify", "--jws", f("list.jws"), "--operator-key", f("other.pub.json"));
    expect(wrong).toMatchObject({ code: 1, out: "" });
    expect(wrong.err).toMatch(/^error: invalid trust list: signed with unknown key \S+\n$/);
    // Several operator keys, comma-separated: the signing one among them is enough.
    const both = await run(
      "verify",
      "--jws",
      f("list.jws"),
      "--operator-key",
      `${f("other.pub.json")},${f("op.pub.json")}`,
    );
    expect(both.code).toBe(0);

    expect(await run("remove", "--list", f("list.json"), "--server", "b.example:8448")).toMatchObject({
      code: 0,
    });
    const resigned = await run(
      "sign",
      "--list",
      f("list.json"),
      "--key",
      f("op.jwk.json"),
      "--out",
      f("list.jws"),
    );
    expect(resigned.out).toMatch(/sequence 3/);
    expect(sequenceOf(readFileSync(f("list.jws"), "utf8"))).toBeGreaterThan(sequenceOf(jws));
    const after = await run("verify", "--jws", f("list.jws"), "--operator-key", f("op.pub.json"));
    expect(after.out).toMatch(/sequence 3/);
    expect(after.out).not.toContain("b.example");
  });

  it("honours --valid-days", async () => {
    const f = tempDir();
    await keygen(f, "op");
    await run("init", "--network", "n", "--out", f("list.json"));
    await run(
      "sign",
      "--list",
      f("list.json"),
      "--key",
      f("op.jwk.json"),
      "--out",
      f("list.jws"),
      "--valid-days",
      "7",
    );
    const { payload } = verifyTrustList(readFileSync(f("list.jws"), "utf8"), [
      JSON.parse(readFileSync(f("op.pub.json"), "utf8")) as JsonWebKey,
    ]);
    expect(Date.parse(payload.expires_at) - Date.parse(payload.issued_at)).toBe(7 * 86_400_000);
  });

  it("writes private keys with mode 0600 and never overwrites one", async () => {
    const f = tempDir();
    await keygen(f, "op");
    const before = readFileSync(f("op.jwk.json"), "utf8");
    const again = await run("keygen", "--out", f("op.jwk.json"));
    expect(again).toMatchObject({
      code: 1,
      err: expect.stringMatching(/exists; not overwriting/) as unknown,
    });
    expect(readFileSync(f("op.jwk.json"), "utf8")).toBe(before);

    const rotated = await run("rotate", "--key", f("op.jwk.json"), "--out", f("op2.jwk.json"));
    expect(rotated.code).toBe(0);
    expect(statSync(f("op2.jwk.json")).mode & 0o777).toBe(0o600);
    const newKid = (JSON.parse(String(rotated.out.split("\n")[0])) as { kid: string }).kid;
    const oldKid = (JSON.parse(before) as { kid: string }).kid;
    expect(newKid).not.toBe(oldKid);
    // The guidance: publish first, then sign with the new key, then retire the old one.
    expect(rotated.out).toMatch(/Give every member organisation the new public key/);
    expect(rotated.out).toContain(`remove ${oldKid} from trust.operator_keys`);
    expect(rotated.out).toContain(`sign --key ${f("op2.jwk.json")}`);
  });

  it("answers usage errors with exit code 2 and one line", async () => {
    const usage = async (...argv: string[]): Promise<string> => {
      const result = await run(...argv);
      expect(result.code).toBe(2);
      expect(result.err).toMatch(/^error: [^\n]+\(see: medmesh trust help\)\n$/);
      return result.err;
    };
    expect(await usage("frobnicate")).toMatch(/unknown command 'frobnicate'/);
    expect(await usage()).toMatch(/no command given/);
    expect(await usage("sign", "--list", "x.json")).toMatch(/--key is required for 'sign'/);
    expect(await usage("init", "--bogus")).toMatch(/bogus/);
    expect(await usage("init", "--network", "n", "--out", "x", "--jws", "y")).toMatch(/jws/); // not an init option
    expect(await usage("verify", "stray")).toMatch(/stray/);
    expect(await usage("rotate", "--out", "x")).toMatch(/--key is required/);
    const f = tempDir();
    await run("init", "--network", "n", "--out", f("list.json"));
    expect(
      await usage("sign", "--list", f("list.json"), "--key", "k", "--out", "o", "--valid-days", "0"),
    ).toMatch(/--valid-days/);

    const help = await run("help");
    expect(help).toMatchObject({ code: 0, err: "" });
    expect(help.out).toMatch(/^usage: medmesh trust/);
  });

  it("reports runtime errors with exit code 1 and one line", async () => {
    const f = tempDir();
    const failure = async (...argv: string[]): Promise<string> => {
      const result = await run(...argv);
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/^error: [^\n]+\n$/);
      return result.err;
    };
    expect(await failure("verify", "--jws", f("missing.jws"), "--operator-key", f("missing.json"))).toMatch(
      /missing\.json does not exist/,
    );
    writeFileSync(f("broken.json"), "{");
    expect(
      await failure("add", "--list", f("broken.json"), "--server", "a", "--name", "A", "--identifier", "1"),
    ).toMatch(/broken\.json is not JSON/);
    await run("init", "--network", "n", "--out", f("list.json"));
    expect(await failure("remove", "--list", f("list.json"), "--server", "a.example")).toMatch(/not in/);
    expect(
      await failure(
        "add",
        "--list",
        f("list.json"),
        "--server",
        "https://a.example",
        "--name",
        "A",
        "--identifier",
        "1",
      ),
    ).toMatch(/organisations\.0\.server_name: not a valid Matrix server name/);
    await keygen(f, "op");
    // The public key is not a signing key.
    expect(
      await failure("sign", "--list", f("list.json"), "--key", f("op.pub.json"), "--out", f("x.jws")),
    ).toMatch(/not a private JWK/);
    writeFileSync(f("garbage.jws"), "not a jws");
    expect(await failure("verify", "--jws", f("garbage.jws"), "--operator-key", f("op.pub.json"))).toMatch(
      /invalid trust list: not a compact JWS/,
    );
  });
});
