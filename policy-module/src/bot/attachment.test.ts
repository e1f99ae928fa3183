import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decryptAttachment, isEncryptedFile, type EncryptedFile } from "./attachment.ts";

/** Encrypts as Matrix clients do: AES-256-CTR, the upper 8 bytes of the IV random, counter 0. */
function encrypt(plain: Buffer): { ciphertext: Buffer; file: EncryptedFile } {
  const key = randomBytes(32);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    ciphertext,
    file: {
      url: "mxc://example.org/abc",
      key: { kty: "oct", alg: "A256CTR", k: key.toString("base64url"), key_ops: ["encrypt", "decrypt"] },
      iv: iv.toString("base64").replace(/=+$/, ""),
      hashes: { sha256: createHash("sha256").update(ciphertext).digest("base64").replace(/=+$/, "") },
      v: "v2",
    },
  };
}

describe("encrypted attachments", () => {
  it("decrypts what a client encrypted", () => {
    const plain = randomBytes(70_000);
    const { ciphertext, file } = encrypt(plain);
    expect(isEncryptedFile(file)).toBe(true);
    expect(decryptAttachment(ciphertext, file).equals(plain)).toBe(true);
  });

  it("refuses a ciphertext that does not match its hash", () => {
    const { ciphertext, file } = encrypt(Buffer.from("passport scan"));
    ciphertext[0] = (ciphertext[0] ?? 0) ^ 1;
    expect(() => decryptAttachment(ciphertext, file)).toThrow(/does not match its hash/);
  });

  it("refuses other key types and versions", () => {
    const { ciphertext, file } = encrypt(Buffer.from("x"));
    expect(() => decryptAttachment(ciphertext, { ...file, v: "v1" })).toThrow(/version/);
    expect(() => decryptAttachment(ciphertext, { ...file, key: { ...file.key, alg: "A128CBC" } })).toThrow(
      /A256CTR/,
    );
    expect(isEncryptedFile({ url: "mxc://a/b" })).toBe(false);
  });
});
