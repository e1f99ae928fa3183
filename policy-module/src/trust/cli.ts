import type { JsonWebKey } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import {
  Ed25519PublicJwkSchema,
  generateOperatorKey,
  loadPrivateKey,
  publicJwkOf,
  signTrustList,
  thumbprint,
  TrustListError,
  TrustListSchema,
  verifyTrustList,
  type TrustList,
} from "./trust-list.ts";

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const USAGE = `usage: medmesh trust <command> [options]
  keygen  --out KEY.jwk.json                 new operator (or organisation) Ed25519 key; prints the public JWK
  init    --network ID --out LIST.json       new, empty, unsigned list
  add     --list LIST.json --server NAME --name ORG --identifier ID [--key PUBLIC.jwk.json]
  remove  --list LIST.json --server NAME
  sign    --list LIST.json --key KEY.jwk.json --out LIST.jws [--valid-days 30]
  verify  --jws LIST.jws --operator-key PUBLIC.jwk.json[,PUBLIC2.jwk.json]
  rotate  --key OLD.jwk.json --out NEW.jwk.json   a new operator key, with the steps to roll it out
  help                                       this text
`;

type Option =
  | "out"
  | "network"
  | "list"
  | "server"
  | "name"
  | "identifier"
  | "key"
  | "jws"
  | "operator-key"
  | "valid-days";

/** Which options each command takes; anything else is a usage error rather than silently ignored. */
const COMMANDS: Record<string, readonly Option[]> = {
  keygen: ["out"],
  init: ["network", "out"],
  add: ["list", "server", "name", "identifier", "key"],
  remove: ["list", "server"],
  sign: ["list", "key", "out", "valid-days"],
  verify: ["jws", "operator-key"],
  rotate: ["key", "out"],
};

const MAX_VALID_DAYS = 366;
const DAY_MS = 86_400_000;

class UsageError extends Error {}

/**
 * `medmesh trust …`: the network operator's tool to create, sign, check and rotate trust lists.
 * Returns the exit code: 0 ok, 1 the command failed, 2 it was called wrongly.
 */
export async function runTrustCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    io.stdout(USAGE);
    return 0;
  }
  try {
    if (command === undefined) throw new UsageError("no command given");
    const allowed = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!allowed) throw new UsageError(`unknown command '${command}'`);
    const { values } = parseArgs({
      args: rest,
      options: Object.fromEntries(allowed.map((o) => [o, { type: "string" as const }])),
    });
    const v = values as Partial<Record<Option, string>>;
    const need = (name: Option): string => {
      const value = v[name];
      if (!value) throw new UsageError(`--${name} is required for '${command}'`);
      return value;
    };
    switch (command) {
      case "keygen": {
        const { publicJwk } = await writeNewKey(need("out"));
        io.stdout(JSON.stringify(publicJwk) + "\n");
        return 0;
      }
      case "rotate": {
        const [oldFile, out] = [need("key"), need("out")];
        const old = await readPrivateJwk(oldFile);
        const { publicJwk } = await writeNewKey(out);
        io.stdout(
          JSON.stringify(publicJwk) +
            "\n" +
            `New operator key ${publicJwk.kid} written to ${out}; ${old.kid} (${oldFile}) stays in use for now.\n` +
            "Next:\n" +
            `  1. Give every member organisation the new public key above; they add it to trust.operator_keys\n` +
            `     next to ${old.kid}. Members cannot verify a list signed with a key they do not have yet.\n` +
            `  2. Once all of them have it, sign with the new key: medmesh trust sign --key ${out} …\n` +
            `  3. Then members remove ${old.kid} from trust.operator_keys, and you destroy ${oldFile}.\n`,
        );
        return 0;
      }
      case "init": {
        const now = new Date().toISOString();
        // The dates are placeholders that `sign` sets. `sign` also increments the sequence, so the
        // first signed list is number 2: what members check is only that it grows.
        const list: TrustList = {
          version: 1,
          network: need("network"),
          sequence: 1,
          issued_at: now,
          expires_at: now,
          organisations: [],
        };
        await writeJson(need("out"), TrustListSchema.parse(list));
        return 0;
      }
      case "add": {
        const file = need("list");
        const server = need("server");
        const [name, identifier] = [need("name"), need("identifier")];
        const list = await readDraft(file);
        const keys = v.key === undefined ? [] : [await readPublicJwk(v.key)];
        const existing = list.organisations.findIndex((o) => o.server_name === server);
        const org = { server_name: server, name, identifier, attestation_keys: keys };
        if (existing >= 0) list.organisations[existing] = org;
        else list.organisations.push(org);
        await writeJson(file, checkDraft(list, file));
        io.stdout(`${existing >= 0 ? "updated" : "added"} ${server} in ${file}\n`);
        return 0;
      }
      case "remove": {
        const file = need("list");
        const server = need("server");
        const list = await readDraft(file);
        const kept = list.organisations.filter((o) => o.server_name !== server);
        if (kept.length === list.organisations.length) throw new Error(`${server} is not in ${file}`);
        await writeJson(file, { ...list, organisations: kept });
        io.stdout(`removed ${server} from ${file}\n`);
        return 0;
      }
      case "sign": {
        const [file, keyFile, out] = [need("list"), need("key"), need("out")];
        const days = Number(v["valid-days"] ?? 30);
        if (!(days > 0 && days <= MAX_VALID_DAYS)) {
          throw new UsageError(`--valid-days must be a number of days from 1 to ${String(MAX_VALID_DAYS)}`);
        }
        const list = await readDraft(file);
        const key = await readPrivateJwk(keyFile);
        const now = new Date();
        // Members refuse a list older than the one in force, so every signed list gets the next
        // sequence, and the draft remembers it for the next signing.
        const signed: TrustList = {
          ...list,
          sequence: list.sequence + 1,
          issued_at: now.toISOString(),
          expires_at: new Date(now.getTime() + days * DAY_MS).toISOString(),
        };
        const jws = signTrustList(signed, loadPrivateKey(key), key.kid);
        await writeFile(out, jws + "\n");
        await writeJson(file, signed);
        io.stdout(
          `signed ${signed.network} sequence ${String(signed.sequence)} with ${key.kid}, ` +
            `valid until ${signed.expires_at}: ${out}\n`,
        );
        return 0;
      }
      case "verify": {
        const files = need("operator-key")
          .split(",")
          .map((f) => f.trim())
          .filter((f) => f !== "");
        const keys = (await Promise.all(files.map(readJson))).flatMap(asKeys);
        const { payload, kid } = verifyTrustList(await readText(need("jws")), keys);
        const servers = payload.organisations.map((o) => `  ${o.server_name}  ${o.name} (${o.identifier})\n`);
        io.stdout(
          `valid: network ${payload.network}, sequence ${String(payload.sequence)}, ` +
            `expires ${payload.expires_at}, signed by ${kid}\n` +
            `${String(servers.length)} server(s):\n` +
            servers.join(""),
        );
        return 0;
      }
    }
    throw new UsageError(`unknown command '${command}'`);
  } catch (err) {
    // One line each: the message, and for usage errors where to read how it is called.
    if (err instanceof UsageError || errorCode(err)?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`error: ${firstLine(err)} (see: medmesh trust help)\n`);
      return 2;
    }
    const message = err instanceof TrustListError ? `invalid trust list: ${firstLine(err)}` : firstLine(err);
    io.stderr(`error: ${message}\n`);
    return 1;
  }
}

function errorCode(err: unknown): string | undefined {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split("\n")[0] ?? message;
}

/** Never overwrites: replacing an operator's private key by accident cannot be undone. */
async function writeNewKey(out: string): Promise<ReturnType<typeof generateOperatorKey>> {
  const key = generateOperatorKey();
  try {
    await writeFile(out, JSON.stringify(key.privateJwk, null, 2) + "\n", { mode: 0o600, flag: "wx" });
  } catch (err) {
    if (errorCode(err) === "EEXIST") throw new Error(`${out} exists; not overwriting a key`, { cause: err });
    throw new Error(`cannot write ${out}: ${(err as Error).message}`, { cause: err });
  }
  // The mode given to writeFile is reduced by the umask; a private key is for its owner only.
  await chmod(out, 0o600);
  return key;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new Error(
      errorCode(err) === "ENOENT"
        ? `${file} does not exist`
        : `cannot read ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await readText(file);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** The unsigned list as `init`/`add`/`sign` keep it; checked so a hand edit fails here, not at members. */
async function readDraft(file: string): Promise<TrustList> {
  return checkDraft(await readJson(file), file);
}

function checkDraft(value: unknown, file: string): TrustList {
  const parsed = TrustListSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new Error(`${file}: invalid list at ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "?"}`);
}

async function readPrivateJwk(file: string): Promise<JsonWebKey & { kid: string; d: string }> {
  const jwk = (await readJson(file)) as JsonWebKey;
  if (typeof jwk.d !== "string" || typeof jwk.kid !== "string" || jwk.kid === "") {
    throw new Error(`${file} is not a private JWK with a kid (create one with: medmesh trust keygen)`);
  }
  loadPrivateKey(jwk); // fails early, naming the problem, for a key of the wrong type
  return jwk as JsonWebKey & { kid: string; d: string };
}

/** An organisation's attestation key, public part only: a private key file must never end up in a list. */
async function readPublicJwk(
  file: string,
): Promise<TrustList["organisations"][number]["attestation_keys"][number]> {
  const jwk = publicJwkOf((await readJson(file)) as JsonWebKey);
  const parsed = Ed25519PublicJwkSchema.safeParse({ ...jwk, kid: jwk.kid ?? thumbprint(jwk) });
  if (!parsed.success) throw new Error(`${file} is not an Ed25519 JWK (kty OKP, crv Ed25519, x)`);
  return parsed.data;
}

/** A key file holds one JWK or a JWK Set, as members' trust.operator_keys files do. */
function asKeys(value: unknown): JsonWebKey[] {
  if (typeof value !== "object" || value === null) return [];
  const v = value as JsonWebKey & { keys?: unknown };
  return Array.isArray(v.keys) ? (v.keys as JsonWebKey[]) : [v];
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFile(file, JSON.stringify(value, null, 2) + "\n");
}
