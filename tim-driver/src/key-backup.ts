import { Method, type MatrixClient } from "matrix-js-sdk";
import type { Logger } from "pino";
import type { Credentials } from "./session.ts";

/**
 * The recovery key (secret-storage key) of each account the driver has set up or been given, by
 * user ID. The driver's devices share it the way one person's devices do: a device logged in again,
 * or a second device, opens secret storage with it, signs itself with the cross-signing keys kept
 * there and takes the key-backup key, so it can decrypt what was sent while it was away.
 */
export class RecoveryKeys {
  private readonly keys: Map<string, Uint8Array>;
  private readonly saved: ((keys: ReadonlyMap<string, Uint8Array>) => void) | undefined;

  /** `stored`: the keys of an earlier run; `saved`: told of every change (the driver's data_dir). */
  constructor(stored?: Map<string, Uint8Array>, saved?: (keys: ReadonlyMap<string, Uint8Array>) => void) {
    this.keys = stored ?? new Map<string, Uint8Array>();
    this.saved = saved;
  }

  get(userId: string): Uint8Array | undefined {
    return this.keys.get(userId);
  }

  set(userId: string, key: Uint8Array): void {
    this.keys.set(userId, key);
    this.saved?.(this.keys);
  }
}

const DEFAULT_KEY_TYPE = "m.secret_storage.default_key";

/**
 * After the first sync: an account without secret storage gets cross-signing, secret storage
 * (a fresh recovery key) and a server-side key backup; an account that has them and whose recovery
 * key is known is opened with it (cross-signing and the backup key taken from secret storage).
 */
export async function setUpKeyBackup(
  client: MatrixClient,
  creds: Credentials,
  keys: RecoveryKeys,
  log: Logger,
): Promise<void> {
  const crypto = client.getCrypto();
  const userId = client.getUserId();
  if (!crypto || !userId) return;
  // A failed look-up fails the set-up: taking it for "no secret storage" would replace the
  // account's cross-signing identity and recovery key.
  // Asked of the server itself (matrix-js-sdk answers from its sync cache once synced).
  const hasStorage = await client.http
    .authedRequest(Method.Get, `/user/${encodeURIComponent(userId)}/account_data/${DEFAULT_KEY_TYPE}`)
    .then(
      () => true,
      (err: unknown) => {
        if ((err as { errcode?: string }).errcode === "M_NOT_FOUND") return false;
        throw err;
      },
    );
  const auth = {
    authUploadDeviceSigningKeys: async (
      makeRequest: (auth: Record<string, unknown> | null) => Promise<unknown>,
    ) => {
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: creds.username },
        password: creds.password,
      });
    },
  };
  if (!hasStorage) {
    const generated = await crypto.createRecoveryKeyFromPassphrase();
    keys.set(userId, generated.privateKey);
    await crypto.bootstrapCrossSigning({ ...auth, setupNewCrossSigning: true });
    await crypto.bootstrapSecretStorage({
      createSecretStorageKey: () => Promise.resolve(generated),
      setupNewSecretStorage: true,
      setupNewKeyBackup: true,
    });
    log.info({ userId }, "cross-signing, secret storage and key backup set up");
    return;
  }
  await openWithRecoveryKey(client, keys, log);
}

/** Uses the known recovery key: cross-signs this device and loads the key-backup key. */
export async function openWithRecoveryKey(
  client: MatrixClient,
  keys: RecoveryKeys,
  log: Logger,
): Promise<boolean> {
  const crypto = client.getCrypto();
  const userId = client.getUserId();
  if (!crypto || !userId || !keys.get(userId)) return false;
  // The private keys in secret storage are checked against the public ones, which must be here first.
  await crypto.userHasCrossSigningKeys(userId, true);
  await crypto.bootstrapCrossSigning({});
  await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
  const check = await crypto.checkKeyBackupAndEnable();
  if (check) {
    // Keys for what arrived before this device existed; later ones are fetched per session.
    const restored = await crypto.restoreKeyBackup().catch((err: unknown) => {
      log.warn(
        { userId, err: err instanceof Error ? err.message : String(err) },
        "key backup restore failed",
      );
      return undefined;
    });
    log.info({ userId, imported: restored?.imported ?? 0 }, "device opened with the recovery key");
  }
  return true;
}

/**
 * Dehydrated devices (MSC3814): a new device first takes over the account's dehydrated device — the
 * room keys sent while the account had no device online, which no key backup has — then leaves a
 * fresh one (matrix-js-sdk replaces it weekly). Its key lives in secret storage, so this needs the
 * set-up above. Without server support: nothing (the backup still covers the rest).
 */
export async function startDehydration(client: MatrixClient, rehydrate: boolean, log: Logger): Promise<void> {
  const crypto = client.getCrypto();
  if (!crypto || !(await crypto.isDehydrationSupported())) return;
  await crypto.startDehydration({ rehydrate });
  log.info({ userId: client.getUserId(), rehydrate }, "dehydrated device in place");
}
