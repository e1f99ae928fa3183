import type { Logger } from "pino";
import { DriverError, NotLoggedIn, notFound } from "./errors.ts";
import { RecoveryKeys } from "./key-backup.ts";
import type { DriverState } from "./persistence.ts";
import { DeviceSession, type Credentials } from "./session.ts";

/** How often logged-in devices' crypto stores are written to the data_dir (unchanged ones skipped). */
const SNAPSHOT_MS = 5_000;

export interface PoolAccount extends Credentials {
  displayName: string;
}

interface Claim {
  claimerName: string;
  seconds: number;
  until: number;
}

/**
 * One device of the pool: a preconfigured account, an optional claim (a lease renewed by every
 * call on the device, as the API asks) and at most one logged-in Matrix session.
 */
export class Device {
  claim: Claim | undefined;
  session: DeviceSession | undefined;
  /** When the last claim ended (a free device still documents a `claimedUntil`). */
  freeSince = new Date();
  /** Serialises state-changing operations on this device (login, direct-room lookup). */
  private queue: Promise<unknown> = Promise.resolve();

  readonly id: number;
  readonly account: PoolAccount;
  constructor(id: number, account: PoolAccount) {
    this.id = id;
    this.account = account;
  }

  isClaimed(now: number): boolean {
    if (this.claim && this.claim.until <= now) {
      this.freeSince = new Date(this.claim.until);
      this.claim = undefined;
    }
    return this.claim !== undefined;
  }

  info(now: number) {
    const claimed = this.isClaimed(now);
    return {
      deviceId: this.id,
      deviceName: `medmesh-tim-${String(this.id)}`,
      deviceStatus: claimed ? ("claimed" as const) : ("free" as const),
      // The document requires both fields; a free device names no claimer and the time it became free.
      claimerName: this.claim?.claimerName ?? "",
      claimedUntil: new Date(this.claim?.until ?? this.freeSince.getTime()).toISOString(),
      cn: this.account.displayName,
    };
  }

  /** The logged-in session, or the documented 401. */
  requireSession(): DeviceSession {
    if (!this.session) throw new NotLoggedIn();
    return this.session;
  }

  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

export class DevicePool {
  readonly devices: Device[];
  readonly keys: RecoveryKeys;

  private readonly clientUrl: string;
  private readonly log: Logger;
  private readonly now: () => number;
  /** The driver's data_dir: devices and recovery keys survive a restart (persistence.ts). */
  private readonly state: DriverState | undefined;
  private snapshots: NodeJS.Timeout | undefined;
  constructor(
    accounts: readonly PoolAccount[],
    clientUrl: string,
    log: Logger,
    opts: { now?: () => number; state?: DriverState } = {},
  ) {
    this.clientUrl = clientUrl;
    this.log = log;
    this.now = opts.now ?? Date.now;
    this.state = opts.state;
    const state = opts.state;
    this.keys = state
      ? new RecoveryKeys(state.recoveryKeys(), (k) => {
          state.saveRecoveryKeys(k);
        })
      : new RecoveryKeys();
    this.devices = accounts.map((a, i) => new Device(i + 1, a));
  }

  /**
   * The devices an earlier run left logged in go on with the same Matrix device and crypto store;
   * one whose access token the server no longer takes is forgotten (logged out).
   */
  async resume(): Promise<void> {
    const state = this.state;
    if (!state) return;
    for (const { poolId, device: stored, crypto } of state.devices()) {
      const device = this.devices.find((d) => d.id === poolId);
      if (!device) {
        state.dropDevice(poolId);
        continue;
      }
      try {
        device.session = await DeviceSession.start(
          this.clientUrl,
          stored.creds,
          `medmesh-tim-${String(poolId)}`,
          this.log.child({ device: poolId }),
          this.keys,
          {
            login: stored.login,
            restore: (prefix) =>
              crypto ? state.restoreCrypto(crypto, stored.cryptoPrefix, prefix) : Promise.resolve(),
          },
        );
        this.log.info({ device: poolId, deviceId: stored.login.deviceId }, "device resumed");
      } catch (err) {
        state.dropDevice(poolId);
        this.log.warn(
          { device: poolId, err: (err as Error).message },
          "could not resume a device; it is logged out",
        );
      }
    }
    this.snapshots = setInterval(() => void this.saveAll(), SNAPSHOT_MS);
    this.snapshots.unref();
  }

  /** Writes every logged-in device's login and crypto store to the data_dir. */
  private async saveAll(): Promise<void> {
    // In each device's queue: a save never races its login or logout.
    for (const d of this.devices) await d.serial(() => this.save(d));
  }

  private async save(device: Device): Promise<void> {
    const s = device.session;
    if (!this.state || !s) return;
    await this.state
      .saveDevice(device.id, { creds: s.creds, login: s.login, cryptoPrefix: s.cryptoPrefix })
      .catch((err: unknown) => {
        this.log.warn({ device: device.id, err: (err as Error).message }, "could not save a device's state");
      });
  }

  get(id: string | undefined): Device {
    const n = Number(id);
    const device = Number.isInteger(n) ? this.devices.find((d) => d.id === n) : undefined;
    if (!device) throw notFound(`device ${String(id)}`);
    return device;
  }

  claim(device: Device, claimerName: string, seconds: number) {
    const now = this.now();
    if (device.isClaimed(now) && device.claim?.claimerName !== claimerName)
      throw new DriverError(400, "DEVICE_CLAIMED", `device ${String(device.id)} is claimed by someone else`);
    device.claim = { claimerName, seconds, until: now + seconds * 1000 };
    return device.info(now);
  }

  unclaim(device: Device) {
    const now = this.now();
    if (!device.isClaimed(now))
      throw new DriverError(400, "DEVICE_NOT_CLAIMED", `device ${String(device.id)} is not claimed`);
    device.claim = undefined;
    device.freeSince = new Date(now);
    return device.info(now);
  }

  /** Every call on a device needs a live claim, and renews it. */
  use(id: string | undefined): Device {
    const device = this.get(id);
    const now = this.now();
    if (!device.isClaimed(now) || !device.claim)
      throw new DriverError(403, "DEVICE_NOT_CLAIMED", `claim device ${String(device.id)} first`);
    device.claim.until = now + device.claim.seconds * 1000;
    return device;
  }

  /** Logs the device in: its own account, or the one given (another account, or a second device). */
  async login(device: Device, creds: Credentials | undefined): Promise<DeviceSession> {
    return device.serial(async () => {
      const wanted = creds ?? device.account;
      if (device.session) {
        const same =
          device.session.creds.username === wanted.username &&
          device.session.creds.password === wanted.password;
        if (same) return device.session;
        await device.session.stop(true);
        device.session = undefined;
      }
      this.state?.dropDevice(device.id);
      device.session = await DeviceSession.start(
        this.clientUrl,
        wanted,
        `medmesh-tim-${String(device.id)}`,
        this.log.child({ device: device.id }),
        this.keys,
      );
      await this.save(device);
      return device.session;
    });
  }

  async logout(device: Device, waitForBackup = true): Promise<void> {
    await device.serial(async () => {
      const session = device.session;
      device.session = undefined;
      this.state?.dropDevice(device.id);
      await session?.stop(true, waitForBackup);
    });
  }

  /**
   * Logs every device out (the cleanup before a scenario). The backup is not waited for: what the
   * last scenario's devices received is not needed by the next one.
   */
  async logoutAll(): Promise<void> {
    await Promise.all(this.devices.map((d) => this.logout(d, false)));
  }

  /** The driver stops: with a data_dir its devices stay logged in for the next run, else they log out. */
  async stop(): Promise<void> {
    clearInterval(this.snapshots);
    if (!this.state) return this.logoutAll();
    for (const d of this.devices) {
      await d.serial(async () => {
        await this.save(d);
        await d.session?.stop(false, false);
        d.session = undefined;
      });
    }
  }
}
