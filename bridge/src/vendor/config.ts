import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "@medmesh/common";
import { z } from "zod";

const Ed25519Jwk = z.object({ kty: z.literal("OKP"), crv: z.literal("Ed25519"), x: z.string().min(43) });

/** The reference vendor's config file (YAML or JSON): `node bridge/src/vendor/main.ts <file>`. */
export const ReferenceVendorConfigSchema = z
  .object({
    data_file: z.string().min(1).describe("The SQLite file: users, conversations, events, outbox."),
    listen: z
      .object({
        host: z.string().min(1).default("127.0.0.1"),
        port: z.number().int().min(0).max(65535),
      })
      .strict(),
    public_url: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe("How MedMesh addresses this vendor, when not the listen address (a proxy, a container)."),
    vendor_id: z.string().regex(/^[a-z0-9-]{1,32}$/, "1–32 lower-case letters, digits and '-'"),
    key_id: z.string().min(1).describe("The keyid MedMesh has on file for this vendor."),
    private_key_file: z
      .string()
      .min(1)
      .describe("The vendor's Ed25519 private key: PKCS#8 PEM, or a JWK (JSON) with d."),
    medmesh: z
      .object({
        url: z.url({ protocol: /^https?$/ }).describe("MedMesh's interop public_url."),
        key_id: z.string().min(1).describe("The keyid of MedMesh's webhook signatures."),
        public_key: Ed25519Jwk.optional().describe("MedMesh's public key as a JWK."),
        public_key_file: z
          .string()
          .min(1)
          .optional()
          .describe("…or a file with it: a JWK, a public PEM, or MedMesh's private PEM."),
      })
      .strict()
      .refine((m) => (m.public_key === undefined) !== (m.public_key_file === undefined), {
        message: "give exactly one of public_key and public_key_file",
      }),
    log_level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    broken: z
      .object({
        accept_unsigned: z.boolean().default(false),
        no_dedup: z.boolean().default(false),
        accept_replay: z.boolean().default(false),
      })
      .strict()
      .optional()
      .describe("Switch webhook checks off, to see the conformance kit notice. Never in a real deployment."),
  })
  .strict();
export type ReferenceVendorConfig = z.output<typeof ReferenceVendorConfigSchema>;

function readKeyFile(file: string, field: string, source: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(source, [`${field}: cannot read ${file}: ${(err as Error).message}`]);
  }
}

function keyFrom(text: string, kind: "private" | "public"): KeyObject {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    const jwk = JSON.parse(trimmed) as JsonWebKey;
    return kind === "private"
      ? createPrivateKey({ key: jwk, format: "jwk" })
      : createPublicKey({ key: jwk, format: "jwk" });
  }
  return kind === "private" ? createPrivateKey(trimmed) : createPublicKey(trimmed);
}

/** The keys a config names, each checked to be Ed25519; problems name the field. */
export function loadKeys(
  config: ReferenceVendorConfig,
  source: string,
  baseDir: string,
): { privateKey: KeyObject; medmeshPublicKey: JsonWebKey } {
  const problems: string[] = [];
  let privateKey: KeyObject | undefined;
  const privateFile = resolve(baseDir, config.private_key_file);
  try {
    privateKey = keyFrom(readKeyFile(privateFile, "private_key_file", source), "private");
    if (privateKey.asymmetricKeyType !== "ed25519")
      problems.push(
        `private_key_file: ${privateFile} holds a ${String(privateKey.asymmetricKeyType)} key, not Ed25519`,
      );
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    problems.push(`private_key_file: ${privateFile} is not a private key: ${(err as Error).message}`);
  }
  let medmeshPublicKey: JsonWebKey | undefined = config.medmesh.public_key;
  if (config.medmesh.public_key_file !== undefined) {
    const file = resolve(baseDir, config.medmesh.public_key_file);
    try {
      const key = keyFrom(readKeyFile(file, "medmesh.public_key_file", source), "public");
      if (key.asymmetricKeyType !== "ed25519")
        problems.push(
          `medmesh.public_key_file: ${file} holds a ${String(key.asymmetricKeyType)} key, not Ed25519`,
        );
      medmeshPublicKey = key.export({ format: "jwk" });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      problems.push(`medmesh.public_key_file: ${file} is not a key: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0 || !privateKey || !medmeshPublicKey) throw new ConfigError(source, problems);
  return { privateKey, medmeshPublicKey };
}
