import type { z } from "zod";
/** What a professional registry says about one registration. */
export type RegistrationStatus = "active" | "suspended" | "struck_off";

export interface RegisteredName {
  /** The name as the registry prints it, e.g. "J.A. van der Berg". */
  full: string;
  initials?: string;
  /** Surname prefix ("van der", "de"), Dutch style. */
  prefix?: string;
  surname: string;
  given?: string;
  /**
   * Other surnames the register holds for the same person, each accepted like the birth surname:
   * the partner's name and the combinations Dutch name use allows ("Jansen-de Vries", "de
   * Vries-Jansen"), a FHIR feed's official or maiden name.
   */
  alternates?: readonly { prefix?: string; surname: string }[];
}

export interface RegistryRecord {
  registry: string;
  /** The registration number, normalised (digits only). Never logged. */
  number: string;
  name: RegisteredName;
  /** e.g. "physician" ("arts"), "nurse" ("verpleegkundige"), "pharmacist" ("apotheker"). */
  profession: string;
  specialisms: string[];
  status: RegistrationStatus;
}

export type NumberCheck = { ok: true; normalised: string } | { ok: false; reason: string };

/** One registry behind one interface: BIG (NL), RIZIV/INAMI (BE), an imported extract, … */
export interface RegistryAdapter {
  readonly registry: string;
  /** Format and check-digit validation, before anything is asked of the registry. */
  validateNumber(number: string): NumberCheck;
  /** The registration, or undefined when the registry does not know the number. */
  lookup(number: string, opts?: { signal?: AbortSignal }): Promise<RegistryRecord | undefined>;
}

/** Why: `removed` is a registry this organisation no longer checks (taken out of its config). */
export type UnavailableKind = "timeout" | "fault" | "malformed" | "http" | "removed";

/** The registry could not answer (timeout, fault, malformed answer): the check stays pending. */
export class RegistryUnavailableError extends Error {
  override name = "RegistryUnavailableError";
  readonly kind: UnavailableKind;
  constructor(kind: UnavailableKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** What a plug-in is given to build its adapter: the service's logger, nothing global. */
export interface RegistryPluginDeps {
  log: { error(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * A registry as a plug-in: one folder under registries/ exporting one of these, listed in
 * registries/index.ts. Its config schema is the type, the validation and the sample of
 * `identity.registries.<id>` (docs/identity.md, "Registries as plug-ins").
 */
export interface RegistryPlugin<Id extends string = string, S extends z.ZodType = z.ZodType> {
  /** The key under identity.registries. */
  readonly id: Id;
  readonly configSchema: S;
  /** Format (and check digit) of the numbers this plug-in's registry issues. */
  readonly validateNumber: (number: string) => NumberCheck;
  /** Look-ups per second at most unless configured (undefined: no limit, data held locally). */
  readonly defaultRatePerSecond: number | undefined;
  ratePerSecond(config: z.output<S>): number | undefined;
  /**
   * The registry names a configured plug-in answers for, for config checks before anything runs;
   * undefined when only the data can tell (an extract without its registry named).
   */
  registryNames(config: z.output<S>): string[] | undefined;
  /** Config fields holding local file paths: the generator resolves them against the deployment config. */
  readonly fileFields: readonly string[];
  /** The adapter; undefined when it cannot be made and its registry cannot be named (logged). */
  create(config: z.output<S>, deps: RegistryPluginDeps): RegistryAdapter | undefined;
}
