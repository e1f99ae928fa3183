import "@medmesh/common/crypto-store";
import { ClientEvent, createClient, Filter, SyncState, type MatrixClient } from "matrix-js-sdk";
import type { Logger as SdkLogger } from "matrix-js-sdk/lib/logger.js";
import { CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import { RustBackupManager } from "matrix-js-sdk/lib/rust-crypto/backup.js";
import type { Logger } from "pino";
import { freshSyncFilter, refreshTrackedDevices } from "@medmesh/common";
import { DriverError } from "./errors.ts";
import { setUpKeyBackup, startDehydration, type RecoveryKeys } from "./key-backup.ts";

// matrix-js-sdk waits up to 10 s (at random) before backing up new room keys, to spread the load
// of many clients. A test step that logs a device out right after it received a message would
// then lose that key; the driver's devices back up within a quarter of a second instead.
Object.defineProperty(RustBackupManager, "maxBackupLoopStartDelayMillis", { value: 250 });

export interface Credentials {
  username: string;
  password: string;
}

export interface LoginResult {
  userId: string;
  deviceId: string;
  accessToken: string;
}

/** Password login through the client API (the proxy), as any TI-M client does. */
export async function passwordLogin(
  clientUrl: string,
  creds: Credentials,
  deviceName: string,
): Promise<LoginResult> {
  const res = await fetch(new URL("/_matrix/client/v3/login", clientUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: creds.username },
      password: creds.password,
      initial_device_display_name: deviceName,
    }),
  });
  const body = (await res.json().catch(() => ({}))) as {
    user_id?: string;
    device_id?: string;
    access_token?: string;
    errcode?: string;
    error?: string;
  };
  if (!res.ok || !body.access_token || !body.user_id || !body.device_id) {
    // A wrong password is a 403 M_FORBIDDEN from Synapse; the suite expects 401 for failed logins.
    const status = res.status === 403 ? 401 : res.ok ? 502 : res.status;
    throw new DriverError(
      status,
      body.errcode ?? "M_UNKNOWN",
      body.error ?? `login failed (${String(res.status)})`,
    );
  }
  return { userId: body.user_id, deviceId: body.device_id, accessToken: body.access_token };
}

export async function logoutToken(clientUrl: string, accessToken: string): Promise<void> {
  await fetch(new URL("/_matrix/client/v3/logout", clientUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
    body: "{}",
  });
}

/** The SDK's arguments as one line (errors by their message). */
const sdkText = (msg: unknown[]): string =>
  msg.map((m) => (m instanceof Error ? m.message : typeof m === "string" ? m : "")).join(" ");

function sdkLogger(log: Logger): SdkLogger {
  // Besides errors, only dehydrated devices (MSC3814) are logged: whether a login found one and
  // what it held.
  const dehydration =
    (level: "info" | "warn") =>
    (...msg: unknown[]) => {
      const text = sdkText(msg);
      if (/dehydrat/i.test(text)) log[level]({ sdk: text }, "matrix-js-sdk");
    };
  const l: SdkLogger = {
    trace: () => undefined,
    debug: () => undefined,
    info: dehydration("info"),
    warn: dehydration("warn"),
    error: (...msg: unknown[]) => {
      log.warn({ sdk: sdkText(msg) }, "matrix-js-sdk error");
    },
    getChild: () => l,
  };
  return l;
}

let starts = 0;

/**
 * One logged-in Matrix device: matrix-js-sdk with Rust crypto whose state lives in IndexedDB
 * (fake-indexeddb in Node, one database set per Matrix device), started and synced.
 */
export class DeviceSession {
  readonly client: MatrixClient;
  readonly login: LoginResult;
  readonly creds: Credentials;
  readonly cryptoPrefix: string;
  private constructor(client: MatrixClient, login: LoginResult, creds: Credentials, cryptoPrefix: string) {
    this.client = client;
    this.login = login;
    this.creds = creds;
    this.cryptoPrefix = cryptoPrefix;
  }

  get userId(): string {
    return this.login.userId;
  }

  /**
   * Logs in (a new Matrix device), or — `resumed`, a device of an earlier driver run whose crypto
   * store was put back — goes on with that device and its access token.
   */
  static async start(
    clientUrl: string,
    creds: Credentials,
    deviceName: string,
    log: Logger,
    keys: RecoveryKeys,
    resumed?: { login: LoginResult; restore: (cryptoPrefix: string) => Promise<void> },
  ): Promise<DeviceSession> {
    const login = resumed?.login ?? (await passwordLogin(clientUrl, creds, deviceName));
    // Unique per start: a resumed device's databases go back under new names (see restore()).
    const cryptoPrefix = `tim-driver:${String(++starts)}:${login.userId}:${login.deviceId}`;
    await resumed?.restore(cryptoPrefix);
    const client = createClient({
      baseUrl: clientUrl,
      userId: login.userId,
      accessToken: login.accessToken,
      deviceId: login.deviceId,
      logger: sdkLogger(log),
      cryptoCallbacks: {
        // Secret storage opens with the account's recovery key, when the driver knows it.
        getSecretStorageKey: ({ keys: wanted }) => {
          const key = keys.get(login.userId);
          const id = Object.keys(wanted)[0];
          return Promise.resolve(key && id ? ([id, key] as [string, Uint8Array<ArrayBuffer>]) : null);
        },
      },
    });
    const t0 = Date.now();
    try {
      await client.initRustCrypto({ useIndexedDB: true, cryptoDatabasePrefix: cryptoPrefix });
      const crypto = Date.now() - t0;
      await startAndSync(client, login.userId);
      if (resumed) await refreshTrackedDevices(client.getCrypto());
      log.info({ userId: login.userId, cryptoMs: crypto, syncMs: Date.now() - t0 - crypto }, "device synced");
      // Without it the device still works, it only cannot read what was sent before it existed.
      await setUpKeyBackup(client, creds, keys, log)
        .then(() => startDehydration(client, resumed === undefined, log))
        .catch((err: unknown) => {
          log.warn(
            { userId: login.userId, err: err instanceof Error ? err.message : String(err) },
            "key backup or dehydrated device set-up failed",
          );
        });
    } catch (err) {
      client.stopClient();
      await logoutToken(clientUrl, login.accessToken);
      await deleteDatabases(cryptoPrefix);
      throw err;
    }
    return new DeviceSession(client, login, creds, cryptoPrefix);
  }

  /**
   * Logs the Matrix device out (the server forgets it) and drops its crypto databases; without
   * `logout` (a driver that keeps its devices across a restart) only stops the client.
   * `waitForBackup`: first let the key backup take this device's last keys (an explicit logout).
   */
  async stop(logout: boolean, waitForBackup = logout): Promise<void> {
    if (waitForBackup) await this.backedUp(3000);
    this.client.stopClient();
    if (logout) await this.client.logout(true).catch(() => undefined);
    await deleteDatabases(this.cryptoPrefix);
  }

  /** Waits (up to `ms`) for the key-backup loop to report nothing left to upload. */
  private async backedUp(ms: number): Promise<void> {
    const crypto = this.client.getCrypto();
    if (!crypto || !(await crypto.getActiveSessionBackupVersion())) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.client.off(CryptoEvent.KeyBackupSessionsRemaining, onRemaining);
        resolve();
      };
      const onRemaining = (remaining: number): void => {
        if (remaining === 0) done();
      };
      const timer = setTimeout(done, ms);
      this.client.on(CryptoEvent.KeyBackupSessionsRemaining, onRemaining);
      // (Re)starts the upload loop, which reports 0 when it has nothing (left) to upload.
      const manager = (crypto as unknown as { backupManager?: { maybeUploadKey(): Promise<void> } })
        .backupManager;
      void manager?.maybeUploadKey();
    });
  }
}

async function startAndSync(client: MatrixClient, userId: string): Promise<void> {
  const prepared = new Promise<void>((resolve, reject) => {
    const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }): void => {
      if (state === SyncState.Prepared) {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        client.off(ClientEvent.Sync, onSync);
        reject(new Error(`initial sync of ${userId} failed: ${data?.error?.message ?? "unknown error"}`));
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  // A filter of its own per start: an initial sync is never answered from Synapse's cache of an
  // earlier one (freshSyncFilter).
  const filter = new Filter(userId);
  filter.setDefinition(freshSyncFilter());
  await client.startClient({ initialSyncLimit: 50, lazyLoadMembers: false, filter });
  await prepared;
}

interface IdbFactory {
  databases(): Promise<{ name?: string }[]>;
  deleteDatabase(name: string): unknown;
}

async function deleteDatabases(prefix: string): Promise<void> {
  const idb = (globalThis as unknown as { indexedDB: IdbFactory }).indexedDB;
  for (const d of await idb.databases()) if (d.name?.startsWith(prefix)) idb.deleteDatabase(d.name);
}
