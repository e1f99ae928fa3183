import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { startConformanceKit, type CheckResult } from "./kit.ts";

/**
 * `node bridge/src/conformance/cli.ts --webhook <url> --vendor-key-id <id> --vendor-public-key <jwk|file>
 * [--trigger <url>] …`: plays MedMesh against a vendor's interop implementation and prints one line
 * per check. Exit code 0 when every check passed, 1 when one failed, 2 for a usage error.
 */

const USAGE = `usage: node bridge/src/conformance/cli.ts --webhook <url> --vendor-key-id <id> --vendor-public-key <jwk json | file>
  [--trigger <url>]               the vendor's trigger endpoint: enables the sender and dedup checks
  [--listen <host:port>]          where the kit serves files and receives events (default 127.0.0.1:0)
  [--public-url <url>]            how the vendor reaches the kit, if not the listen address
  [--medmesh-private-key <file>]  MedMesh's key (a JWK with "d", or PKCS#8 PEM) instead of a fresh one
  [--medmesh-key-id <id>]         its keyid (default medmesh-conformance)
  [--save-key <file>]             write the fresh key as a JWK file, for --medmesh-private-key next time
  [--vendor-user <id>]            one of the vendor's user IDs, made a member of the test conversation
  [--timeout <seconds>]           how long to wait for downloads and retries (default 30)
  [--yes]                         do not wait for Enter before the checks start
`;

class UsageError extends Error {}

function keyText(value: string, option: string): string {
  if (value.trim().startsWith("{")) return value;
  if (!existsSync(value)) throw new UsageError(`${option}: ${value} is neither a JWK (JSON) nor a file`);
  return readFileSync(value, "utf8");
}

function parseKey(text: string, kind: "public" | "private", option: string): KeyObject {
  let key: KeyObject;
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith("{")) {
      const jwk = JSON.parse(trimmed) as JsonWebKey;
      key =
        kind === "private"
          ? createPrivateKey({ key: jwk, format: "jwk" })
          : createPublicKey({ key: jwk, format: "jwk" });
    } else key = kind === "private" ? createPrivateKey(trimmed) : createPublicKey(trimmed);
  } catch (err) {
    throw new UsageError(`${option}: not a ${kind} key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    throw new UsageError(`${option}: an Ed25519 key is required, not ${String(key.asymmetricKeyType)}`);
  return key;
}

function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new UsageError(`--listen: expected host:port (e.g. 127.0.0.1:0), got ${value}`);
  return { host: m[1] ?? m[2] ?? "127.0.0.1", port };
}

function parseUrl(value: string | undefined, option: string): string | undefined {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${option}: not a URL: ${value}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`${option}: an http(s) URL is required, got ${value}`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      webhook: { type: "string" },
      "vendor-key-id": { type: "string" },
      "vendor-public-key": { type: "string" },
      trigger: { type: "string" },
      listen: { type: "string", default: "127.0.0.1:0" },
      "public-url": { type: "string" },
      "medmesh-private-key": { type: "string" },
      "medmesh-key-id": { type: "string", default: "medmesh-conformance" },
      "save-key": { type: "string" },
      "vendor-user": { type: "string" },
      timeout: { type: "string", default: "30" },
      yes: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const webhook = parseUrl(values.webhook, "--webhook");
  if (!webhook) throw new UsageError("--webhook is required");
  const vendorKeyId = values["vendor-key-id"];
  if (!vendorKeyId) throw new UsageError("--vendor-key-id is required");
  if (!values["vendor-public-key"]) throw new UsageError("--vendor-public-key is required");
  const vendorPublicKey = parseKey(
    keyText(values["vendor-public-key"], "--vendor-public-key"),
    "public",
    "--vendor-public-key",
  );
  const trigger = parseUrl(values.trigger, "--trigger");
  const publicUrl = parseUrl(values["public-url"], "--public-url");
  const timeout = Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw new UsageError(`--timeout: a number of seconds, got ${values.timeout}`);
  const keyFile = values["medmesh-private-key"];
  const generated = keyFile === undefined;
  if (!generated && values["save-key"])
    throw new UsageError("--save-key only saves a freshly generated key: leave out --medmesh-private-key");
  const privateKey = generated
    ? generateKeyPairSync("ed25519").privateKey
    : parseKey(keyText(keyFile, "--medmesh-private-key"), "private", "--medmesh-private-key");
  const keyId = values["medmesh-key-id"];
  if (generated && values["save-key"]) {
    writeFileSync(values["save-key"], `${JSON.stringify(privateKey.export({ format: "jwk" }))}\n`, {
      mode: 0o600,
    });
  }

  const kit = await startConformanceKit({
    listen: parseListen(values.listen),
    ...(publicUrl ? { publicUrl } : {}),
    medmesh: { keyId, privateKey },
  });
  const out = (line: string) => process.stdout.write(`${line}\n`);
  try {
    out(`MedMesh interop conformance kit, playing MedMesh at ${kit.url}`);
    out("Your messenger must be configured with:");
    out(`  MedMesh URL:        ${kit.url}`);
    out(`  MedMesh key id:     ${kit.medmeshKeyId}`);
    out(`  MedMesh public key: ${JSON.stringify(kit.medmeshPublicKey)}`);
    if (generated && values["save-key"])
      out(
        `  (the private key is in ${values["save-key"]}: pass --medmesh-private-key ${values["save-key"]} next time)`,
      );
    if (generated && !values.yes) {
      if (process.stdin.isTTY) {
        const rl = createInterface({ input: process.stdin, output: process.stdout });
        await new Promise<void>((resolve) => {
          rl.question("Press Enter when it is, to start the checks… ", () => {
            resolve();
          });
        });
        rl.close();
      } else {
        out(
          "warning: this key was just generated and nobody can confirm it is configured (stdin is not a terminal);" +
            " the signature checks will fail unless the vendor picks it up: use --medmesh-private-key",
        );
      }
    }
    out("");
    const { results } = await kit.run({
      webhook,
      vendorKeyId,
      vendorPublicKey,
      ...(trigger ? { trigger } : {}),
      ...(values["vendor-user"] ? { vendorUser: values["vendor-user"] } : {}),
      timeoutMs: timeout * 1000,
      onResult: (r: CheckResult) => {
        out(r.ok ? `PASS ${r.name}` : `FAIL ${r.name}: ${r.detail}`);
      },
    });
    const failed = results.filter((r) => !r.ok).length;
    out("");
    if (!trigger)
      out("not run without --trigger: webhook.retry_applied_once and the sender.* checks (see the README)");
    out(`${String(results.length - failed)} passed, ${String(failed)} failed`);
    return failed === 0 ? 0 : 1;
  } finally {
    await kit.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = (err as { code?: unknown }).code;
    const usage =
      err instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"));
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${usage ? USAGE : ""}`);
    process.exitCode = usage ? 2 : 1;
  },
);
