import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decryptAttachment, encryptAttachment, isEncryptedFile, type EncryptedFile } from "./attachment.ts";

const encrypt = (plain: Buffer): { ciphertext: Buffer; file: EncryptedFile } => {
  const { ciphertext, file } = encryptAttachment(plain);
  return { ciphertext, file: { ...file, url: "mxc://example.org/abc" } };
};

describe("encrypted attachments", () => {
  it("decrypts what was encrypted (AES-256-CTR, IV counter half zero)", () => {
    const plain = randomBytes(70_000);
    const { ciphertext, file } = encrypt(plain);
    expect(isEncryptedFile(file)).toBe(true);
    expect(decryptAttachment(ciphertext, file).equals(plain)).toBe(true);
    expect(Buffer.from(file.iv, "base64").subarray(8)).toEqual(Buffer.alloc(8));
    expect(ciphertext.equals(plain)).toBe(false);
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
