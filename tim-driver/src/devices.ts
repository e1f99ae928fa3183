import type { Logger } from "pino";
import { DriverError, NotLoggedIn, notFound } from "./errors.ts";
import { RecoveryKeys } from "./key-backup.ts";
import { DeviceSession, type Credentials } from "./session.ts";

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
  readonly keys = new RecoveryKeys();

  private readonly clientUrl: string;
  private readonly log: Logger;
  private readonly now: () => number;
  constructor(
    accounts: readonly PoolAccount[],
    clientUrl: string,
    log: Logger,
    now: () => number = Date.now,
  ) {
    this.clientUrl = clientUrl;
    this.log = log;
    this.now = now;
    this.devices = accounts.map((a, i) => new Device(i + 1, a));
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
      device.session = await DeviceSession.start(
        this.clientUrl,
        wanted,
        `medmesh-tim-${String(device.id)}`,
        this.log.child({ device: device.id }),
        this.keys,
      );
      return device.session;
    });
  }

  async logout(device: Device, waitForBackup = true): Promise<void> {
    await device.serial(async () => {
      const session = device.session;
      device.session = undefined;
      await session?.stop(true, waitForBackup);
    });
  }

  /**
   * Logs every device out. For a cleanup or shutdown the backup is not waited for: what the last
   * scenario's devices received is not needed by the next one.
   */
  async stop(): Promise<void> {
    await Promise.all(this.devices.map((d) => this.logout(d, false)));
  }
}
