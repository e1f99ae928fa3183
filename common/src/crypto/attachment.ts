import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The `file` object of an encrypted attachment (Matrix spec, "Sending encrypted attachments"). */
export interface EncryptedFile {
  url: string;
  key: { kty: string; alg: string; k: string; key_ops?: string[]; ext?: boolean };
  iv: string;
  hashes: Record<string, string>;
  v: string;
}

export function isEncryptedFile(value: unknown): value is EncryptedFile {
  if (typeof value !== "object" || value === null) return false;
  const f = value as Partial<EncryptedFile>;
  return (
    typeof f.url === "string" &&
    typeof f.iv === "string" &&
    typeof f.key?.k === "string" &&
    typeof f.hashes?.sha256 === "string"
  );
}

const fromBase64 = (s: string): Buffer => Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");

/**
 * Decrypts an attachment a client encrypted (AES-256-CTR, key as JWK, SHA-256 of the ciphertext).
 * The hash is checked first: a modified ciphertext is refused, never half-decrypted.
 */
export function decryptAttachment(ciphertext: Buffer, file: EncryptedFile): Buffer {
  if (file.v !== "v2") throw new Error(`unsupported encrypted attachment version ${file.v}`);
  if (file.key.alg !== "A256CTR" || file.key.kty !== "oct")
    throw new Error("unsupported attachment key (expected A256CTR)");
  const expected = fromBase64(file.hashes.sha256 ?? "");
  const actual = createHash("sha256").update(ciphertext).digest();
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual))
    throw new Error("the attachment does not match its hash");
  const key = fromBase64(file.key.k);
  const iv = fromBase64(file.iv);
  if (key.length !== 32 || iv.length !== 16) throw new Error("malformed attachment key or iv");
  const decipher = createDecipheriv("aes-256-ctr", key, iv);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

const toBase64Url = (b: Buffer): string => b.toString("base64url");

/**
 * Encrypts an attachment for an encrypted room: a fresh AES-256-CTR key, a random IV whose
 * counter half is zero (as the spec asks), and the SHA-256 of the ciphertext. `url` is filled in
 * by the caller after uploading the ciphertext.
 */
export function encryptAttachment(plaintext: Buffer): {
  ciphertext: Buffer;
  file: Omit<EncryptedFile, "url" | "key"> & {
    key: { kty: "oct"; alg: "A256CTR"; k: string; key_ops: string[]; ext: true };
  };
} {
  const key = randomBytes(32);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return {
    ciphertext,
    file: {
      key: { kty: "oct", alg: "A256CTR", k: toBase64Url(key), key_ops: ["encrypt", "decrypt"], ext: true },
      iv: iv.toString("base64").replace(/=+$/, ""),
      hashes: { sha256: createHash("sha256").update(ciphertext).digest("base64").replace(/=+$/, "") },
      v: "v2",
    },
  };
}
