import type { JsonWebKey } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import {
  generateKey,
  loadPrivateKey,
  publicJwkOf,
  signTrustList,
  TrustListError,
  verifyTrustList,
  type TrustListInput,
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
  rotate  --out NEW.jwk.json                 a new operator key, with the steps to roll it out`;

class UsageError extends Error {}

/** `medmesh trust …`: the network operator's tool to create, sign, check and rotate trust lists. */
export async function runTrustCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    const { values: v } = parseArgs({
      args: rest,
      options: {
        out: { type: "string" },
        network: { type: "string" },
        list: { type: "string" },
        server: { type: "string" },
        name: { type: "string" },
        identifier: { type: "string" },
        key: { type: "string" },
        jws: { type: "string" },
        "operator-key": { type: "string" },
        "valid-days": { type: "string" },
      },
    });
    const need = (name: keyof typeof v): string => {
      const value = v[name];
      if (!value) throw new UsageError(`--${name} is required for '${String(command)}'`);
      return value;
    };
    switch (command) {
      case "keygen":
      case "rotate": {
        const { privateJwk, publicJwk } = generateKey();
        const out = need("out");
        await writeFile(out, JSON.stringify(privateJwk, null, 2) + "\n", { mode: 0o600 });
        await chmod(out, 0o600);
        io.stdout(JSON.stringify(publicJwk) + "\n");
        if (command === "rotate") {
          io.stdout(
            "Next: give every member organisation the new public key (add it to trust.operator_keys next to the old one),\n" +
              "then sign lists with the new key, then remove the old key from the members' configs.\n",
          );
        }
        return 0;
      }
      case "init": {
        const now = new Date().toISOString();
        const list: TrustListInput = {
          version: 1,
          network: need("network"),
          sequence: 1,
          issued_at: now,
          expires_at: now,
          organisations: [],
        };
        await writeJson(need("out"), list);
        return 0;
      }
      case "add":
      case "remove": {
        const file = need("list");
        const list = (await readJson(file)) as TrustListInput;
        const server = need("server");
        list.organisations = list.organisations.filter((o) => o.server_name !== server);
        if (command === "add") {
          const keyFile = v.key;
          list.organisations.push({
            server_name: server,
            name: need("name"),
            identifier: need("identifier"),
            attestation_keys: keyFile ? [publicJwkOf((await readJson(keyFile)) as JsonWebKey) as never] : [],
          });
        }
        await writeJson(file, list);
        return 0;
      }
      case "sign": {
        const [file, keyFile, out] = [need("list"), need("key"), need("out")];
        const list = (await readJson(file)) as TrustListInput;
        const key = (await readJson(keyFile)) as JsonWebKey & { kid?: string };
        if (!key.kid || !key.d)
          throw new UsageError("--key must be a private JWK with a kid (medmesh trust keygen)");
        const days = Number(v["valid-days"] ?? 30);
        if (!(days > 0)) throw new UsageError("--valid-days must be a positive number");
        const now = new Date();
        // Every signed list supersedes the previous one: members refuse an older sequence.
        const signed = {
          ...list,
          sequence: list.sequence + 1,
          issued_at: now.toISOString(),
          expires_at: new Date(now.getTime() + days * 86_400_000).toISOString(),
        };
        await writeFile(out, signTrustList(signed, loadPrivateKey(key), key.kid) + "\n");
        await writeJson(file, signed);
        io.stdout(
          `signed ${signed.network} sequence ${String(signed.sequence)}, valid until ${signed.expires_at}\n`,
        );
        return 0;
      }
      case "verify": {
        const keys = await Promise.all(
          need("operator-key")
            .split(",")
            .map(async (f) => (await readJson(f)) as JsonWebKey),
        );
        const { payload } = verifyTrustList(await readFile(need("jws"), "utf8"), keys);
        io.stdout(
          `valid: network ${payload.network}, sequence ${String(payload.sequence)}, expires ${payload.expires_at}\n` +
            payload.organisations.map((o) => `  ${o.server_name}  ${o.name} (${o.identifier})\n`).join(""),
        );
        return 0;
      }
      default:
        throw new UsageError(command ? `unknown command '${command}'` : "no command given");
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`error: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
    const message =
      err instanceof TrustListError ? `invalid trust list: ${err.message}` : (err as Error).message;
    io.stderr(`error: ${message}\n`);
    return 1;
  }
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFile(file, JSON.stringify(value, null, 2) + "\n");
}
