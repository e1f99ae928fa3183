import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

/** Writes a secret file once (mode 0600); an existing one is kept so a restart resumes with the same secrets. */
export async function ensureSecretFile(path: string, make: () => string): Promise<string> {
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const value = make();
  await writeFile(path, `${value}\n`, { mode: 0o600 });
  return value;
}

/**
 * Copies an operator's secret (one value in a file) to where a service reads it, mode 0600, on
 * every generation (a rotated secret is taken over). `what` names the setting in errors.
 */
export async function copySecretFile(source: string, target: string, what: string): Promise<void> {
  let secret: string;
  try {
    secret = readFileSync(source, "utf8").trim();
  } catch (err) {
    throw new Error(
      `${what}: ${source} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      { cause: err },
    );
  }
  if (!secret) throw new Error(`${what}: ${source} is empty`);
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  await writeFile(target, `${secret}\n`, { mode: 0o600 });
  await chmod(target, 0o600);
}

/**
 * A Synapse signing key line: `ed25519 <key id> <unpadded base64 seed>`. Generated here rather
 * than by `synapse --generate-keys` so config generation needs no Python start-up.
 */
export function synapseSigningKey(): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  const seed = der
    .subarray(der.length - 32)
    .toString("base64")
    .replace(/=+$/, "");
  const keyId = `a_${randomBytes(3).toString("base64url").replace(/[-_]/g, "x").slice(0, 4)}`;
  return `ed25519 ${keyId} ${seed}`;
}
