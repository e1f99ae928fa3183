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
