import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { restore, snapshot } from "@medmesh/common/crypto-store";
import type { Credentials, LoginResult } from "./session.ts";

/** What a logged-in pool device needs to go on after a driver restart. */
export interface StoredDevice {
  creds: Credentials;
  login: LoginResult;
  /** The name prefix of the device's crypto databases when they were written. */
  cryptoPrefix: string;
}

/**
 * The driver's state on disk (`data_dir`, docs/tim-driver.md): each account's recovery key, and
 * each logged-in pool device — its login (access token, Matrix device ID) and a snapshot of its
 * Rust crypto store (Olm account, sessions, room keys). A restarted driver goes on with the same
 * Matrix devices and every key they held; what arrived after the last snapshot comes back from the
 * server-side key backup. Files are the driver user's only (0600 in a 0700 folder): they hold
 * access tokens and recovery keys.
 */
export class DriverState {
  private readonly dir: string;
  private readonly hashes = new Map<number, string>();

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(join(dir, "devices"), { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }

  /** Every recovery key the driver made or imported, by account. */
  recoveryKeys(): Map<string, Uint8Array> {
    const raw = (this.read("recovery-keys.json") ?? {}) as Record<string, string>;
    // A copy with an ArrayBuffer of its own: a small Buffer is a view into Node's shared pool, and
    // the crypto code reads the key's whole buffer.
    return new Map(
      Object.entries(raw).map(([user, key]) => [user, new Uint8Array(Buffer.from(key, "base64"))]),
    );
  }

  saveRecoveryKeys(keys: ReadonlyMap<string, Uint8Array>): void {
    const raw = Object.fromEntries(
      [...keys].map(([user, key]) => [user, Buffer.from(key).toString("base64")]),
    );
    this.write("recovery-keys.json", JSON.stringify(raw));
  }

  /** The pool devices that were logged in when the driver last stopped (or crashed). */
  devices(): { poolId: number; device: StoredDevice; crypto: Buffer | undefined }[] {
    return readdirSync(join(this.dir, "devices"))
      .filter((f) => /^\d+\.json$/.test(f))
      .flatMap((f) => {
        const poolId = Number(f.slice(0, -5));
        const device = this.read(join("devices", f)) as (StoredDevice & { crypto?: string }) | undefined;
        if (!device?.login.accessToken) return [];
        const crypto = device.crypto ? Buffer.from(device.crypto, "base64") : undefined;
        const { creds, login, cryptoPrefix } = device;
        return [{ poolId, device: { creds, login, cryptoPrefix }, crypto }];
      });
  }

  /** Puts a stored device's crypto databases back under a new prefix, before its client opens them. */
  restoreCrypto(data: Buffer, from: string, to: string): Promise<void> {
    return restore(data, (name) => (name.startsWith(from) ? to + name.slice(from.length) : name));
  }

  /** Records a device's login and its crypto store now (skipped when the store did not change). */
  async saveDevice(poolId: number, device: StoredDevice): Promise<void> {
    const crypto = await snapshot(device.cryptoPrefix);
    const hash = createHash("sha256").update(crypto).update(device.login.accessToken).digest("base64");
    if (this.hashes.get(poolId) === hash) return;
    this.write(
      join("devices", `${String(poolId)}.json`),
      JSON.stringify({ ...device, crypto: crypto.toString("base64") }),
    );
    this.hashes.set(poolId, hash);
  }

  /** The device logged out (or its token is gone): nothing of it is kept. */
  dropDevice(poolId: number): void {
    rmSync(join(this.dir, "devices", `${String(poolId)}.json`), { force: true });
    this.hashes.delete(poolId);
  }

  private read(name: string): unknown {
    try {
      return JSON.parse(readFileSync(join(this.dir, name), "utf8")) as unknown;
    } catch {
      return undefined;
    }
  }

  /** Whole or not at all: a crash mid-write leaves the previous file. */
  private write(name: string, text: string): void {
    const path = join(this.dir, name);
    writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }
}
