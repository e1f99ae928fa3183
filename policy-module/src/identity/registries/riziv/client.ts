import { z } from "zod";
import { RegistryUnavailableError, type RegistryAdapter, type RegistryRecord } from "../types.ts";
import { DEFAULT_MAX_ANSWER_BYTES, readCappedText } from "../http.ts";
import { partnerNameForms } from "../name-match.ts";

/*
 * Belgian RIZIV/INAMI numbers (NIHDI professional numbers).
 *
 * Structure: 11 digits, written 1-23456-78-901:
 *   digit 1      profession ("beroepsnummer"), digits 1-6 the base number,
 *   digits 7-8   check digits over the 6-digit base,
 *   digits 9-11  qualification ("bevoegdheidscode" / "code de compétence"), which changes over a career
 *                (e.g. physician in training → recognised GP), while the first 8 digits stay the same.
 *
 * Check digits, as implemented: check = 97 − (base mod 97) for the original numbers, and
 * check = 89 − (base mod 89) for the numbers RIZIV introduced because the mod-97 range ran out
 * (RIZIV note I 2012/26 of 31/10/2012; used for home nurses and midwives since 2013, for physicians
 * since 1 April 2019). Sources:
 *   - RIZIV/INAMI "Softwareleveranciers" page (riziv.fgov.be/nl/professionals/andere-professionals/
 *     softwareleveranciers): announces the second check digit "modulo 89";
 *   - infohos.be/nl/blog/12189: positions 7-8 are "the modulo 97 of the first 6 positions", and
 *     the modulo-89 change; the first 8 digits (not 6) now identify a care provider;
 *   - riziv.fgov.be "Een RIZIV-nummer krijgen" (dentists): the first 8 digits stay for the whole career.
 * The exact "97 − remainder" form is not spelled out in the pages found; it is the form that reproduces
 * two published numbers: 1-08290-59 (mod 97; HL7 Belgium FHIR examples, nihdi-professional) and
 * 1-01857-48-004 (mod 89; a physician's number printed on a practice website). Because the number does
 * not say which scheme it uses, both are accepted — which lets through about 2 in 100 random check digits
 * instead of 1 in 100. Uncertain: whether some old numbers use yet another variant.
 *
 * Profession digit (nl.wikipedia.org/wiki/RIZIV, "Beroepsnummer"): 1 physician, 2 hospital pharmacist,
 * 3 dentist, 4 midwife or nurse, 5 physiotherapist/speech therapist, 6 pharmacist, 7 hospital,
 * 8 clinical laboratory. care-ace.be (wiki "RIZIV-nummer") adds "8 or 9: care assistant (zorgkundige)";
 * that conflicts for 8, so 7 and 8 (institutions per Wikipedia) are refused for a practitioner and 9 is
 * accepted as care assistant. The brief's guesses (2 dentist, 7 pharmacist, …) contradict both sources.
 *
 * Qualification codes for physicians (le-gbo.be "Devenir médecin généraliste"; RIZIV "Een RIZIV-nummer
 * krijgen" for physicians: "-000" = holder of the physician's diploma): 000 physician (diploma holder),
 * 009 physician (diploma holder, earlier registration). 001/002 (GP with acquired rights), 003/004
 * (recognised GP) and 005/006 (GP in training) follow common usage, the even code of each pair being the
 * accredited variant; the pages found were cut off before confirming these, so treat them as uncertain.
 * Other codes are reported as the bare code: RIZIV's full code tables were not found in a public source.
 */

export interface RizivParsed {
  ok: true;
  /** 11 digits, no separators. */
  normalised: string;
  /** English profession label from the first digit, e.g. "physician". */
  profession: string;
  /** The 3-digit qualification code (last three digits). */
  qualification: string;
  /** What the qualification code means, as far as known; otherwise "qualification code NNN". */
  qualificationLabel: string;
  /** Which check-digit scheme matched. */
  checkScheme: "mod97" | "mod89";
}

export type RizivParseResult = RizivParsed | { ok: false; reason: string };

const PROFESSIONS: Readonly<Record<string, string>> = {
  "1": "physician",
  "2": "hospital pharmacist",
  "3": "dentist",
  "4": "nurse or midwife",
  "5": "physiotherapist or speech therapist",
  "6": "pharmacist",
  "9": "care assistant",
};

const INSTITUTIONS: Readonly<Record<string, string>> = { "7": "a hospital", "8": "a clinical laboratory" };

const PHYSICIAN_QUALIFICATIONS: Readonly<Record<string, string>> = {
  "000": "physician (diploma holder)",
  "009": "physician (diploma holder, earlier registration)",
  "001": "general practitioner with acquired rights",
  "002": "general practitioner with acquired rights, accredited",
  "003": "recognised general practitioner",
  "004": "recognised general practitioner, accredited",
  "005": "general practitioner in training",
  "006": "general practitioner in training",
};

/** The two possible check-digit pairs for a 6-digit base (see the header comment). */
export function rizivCheckDigits(base: string): { mod97: string; mod89: string } {
  if (!/^\d{6}$/.test(base)) throw new Error("A RIZIV base number has 6 digits");
  const n = Number(base);
  return {
    mod97: String(97 - (n % 97)).padStart(2, "0"),
    mod89: String(89 - (n % 89)).padStart(2, "0"),
  };
}

/** 1-23456-78-901, the way RIZIV prints numbers. */
export function formatRizivNumber(normalised: string): string {
  return `${normalised.slice(0, 1)}-${normalised.slice(1, 6)}-${normalised.slice(6, 8)}-${normalised.slice(8)}`;
}

export function parseRizivNumber(input: string): RizivParseResult {
  const trimmed = input.trim();
  if (trimmed === "") return { ok: false, reason: "No RIZIV/INAMI number was given" };
  // People copy numbers from letters and websites in all three styles: 1-23456-78-901, 123.45678.901, spaces.
  if (!/^[\d\s.\-/]+$/.test(trimmed)) {
    return {
      ok: false,
      reason: "A RIZIV/INAMI number contains only digits (separators - . / and spaces allowed)",
    };
  }
  const digits = trimmed.replace(/[\s.\-/]/g, "");
  if (digits.length === 8) {
    return {
      ok: false,
      reason:
        "This looks like the first 8 digits only; give the full 11-digit RIZIV/INAMI number including the 3-digit qualification code",
    };
  }
  if (digits.length !== 11) {
    return { ok: false, reason: `A RIZIV/INAMI number has 11 digits; this one has ${digits.length}` };
  }
  const first = digits.slice(0, 1);
  const institution = INSTITUTIONS[first];
  if (institution) {
    return {
      ok: false,
      reason: `This RIZIV/INAMI number belongs to ${institution}, not to an individual care provider`,
    };
  }
  const profession = PROFESSIONS[first];
  if (!profession)
    return { ok: false, reason: "This RIZIV/INAMI number does not start with a known profession digit" };
  const base = digits.slice(0, 6);
  const check = digits.slice(6, 8);
  const expected = rizivCheckDigits(base);
  const scheme = check === expected.mod97 ? "mod97" : check === expected.mod89 ? "mod89" : undefined;
  if (!scheme) {
    return {
      ok: false,
      reason: "The check digits of this RIZIV/INAMI number are wrong; please check for a typing error",
    };
  }
  const qualification = digits.slice(8);
  const label =
    (first === "1" ? PHYSICIAN_QUALIFICATIONS[qualification] : undefined) ??
    `qualification code ${qualification}`;
  return {
    ok: true,
    normalised: digits,
    profession,
    qualification,
    qualificationLabel: label,
    checkScheme: scheme,
  };
}

/*
 * The JSON contract below is MedMesh's adapter contract for a configurable registry endpoint, not RIZIV's
 * own interface: RIZIV/INAMI's web services (via the eHealth platform) are not public, so an organisation
 * runs or buys a small service that answers in this shape (backed by eHealth's addressbook, RIZIV's public
 * search, or its own records):
 *   GET {url}/practitioners/{11 digits}
 *   200 { number, firstName, lastName, profession, qualification, specialisms: string[],
 *         status: "active" | "suspended" | "struck_off" | "deceased", partnerLastName? }
 *   404 when the number is unknown.
 */
export const rizivPractitionerSchema = z.object({
  number: z.string().min(1),
  firstName: z.string(),
  lastName: z.string().min(1),
  profession: z.string().min(1),
  qualification: z.string(),
  specialisms: z.array(z.string()),
  status: z.enum(["active", "suspended", "struck_off", "deceased"]),
  /** The partner's surname where the practitioner uses it (optional; matched as partner name forms). */
  partnerLastName: z.string().optional(),
});

export type RizivPractitioner = z.infer<typeof rizivPractitionerSchema>;

export interface RizivRegistryOptions {
  url: string;
  /** Per lookup, including reading the body. */
  timeoutMs?: number;
  /** Largest answer read; more is a malformed answer. */
  maxAnswerBytes?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;

function initialsOf(given: string): string {
  return given
    .split(/[\s-]+/)
    .filter((p) => p !== "")
    .map((p) => `${p.charAt(0).toUpperCase()}.`)
    .join("");
}

function toRecord(p: RizivPractitioner, normalised: string): RegistryRecord {
  const given = p.firstName.trim();
  const surname = p.lastName.trim();
  const alternates = p.partnerLastName ? partnerNameForms({ surname }, { surname: p.partnerLastName }) : [];
  return {
    registry: "RIZIV",
    number: normalised,
    // Belgian surnames carry their particle ("Van den Bossche") as part of the surname, so no separate prefix.
    name: {
      full: given ? `${given} ${surname}` : surname,
      surname,
      ...(given ? { given, initials: initialsOf(given) } : {}),
      ...(alternates.length > 0 ? { alternates } : {}),
    },
    profession: p.profession,
    specialisms: p.specialisms,
    // The verification only distinguishes "may practise" from "may not"; a deceased person may not.
    status: p.status === "deceased" ? "struck_off" : p.status,
  };
}

export function createRizivRegistry(opts: RizivRegistryOptions): RegistryAdapter {
  const base = opts.url.replace(/\/+$/, "");
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  const validateNumber = (number: string) => {
    const p = parseRizivNumber(number);
    return p.ok ? { ok: true as const, normalised: p.normalised } : p;
  };

  const lookup = async (
    number: string,
    o?: { signal?: AbortSignal },
  ): Promise<RegistryRecord | undefined> => {
    const parsed = parseRizivNumber(number);
    // Nothing is asked of the registry about a number that cannot exist.
    if (!parsed.ok) return undefined;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = o?.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
    // The caller's own abort is not a registry failure: let it through as it is.
    const fail = (err: unknown): never => {
      if (o?.signal?.aborted) throw o.signal.reason;
      if (timeout.aborted) {
        throw new RegistryUnavailableError(
          "timeout",
          `RIZIV registry did not answer within ${timeoutMs} ms`,
          {
            cause: err,
          },
        );
      }
      throw new RegistryUnavailableError("fault", "RIZIV registry could not be reached", { cause: err });
    };

    let res: Response;
    try {
      res = await fetch(`${base}/practitioners/${parsed.normalised}`, {
        signal,
        headers: { accept: "application/json" },
      });
    } catch (err) {
      return fail(err);
    }
    if (res.status === 404) {
      await res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new RegistryUnavailableError("http", `RIZIV registry answered HTTP ${res.status}`);
    }
    let text: string;
    try {
      text = await readCappedText(res, opts.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES, "RIZIV registry");
    } catch (err) {
      if (err instanceof RegistryUnavailableError) throw err;
      return fail(err);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new RegistryUnavailableError(
        "malformed",
        "RIZIV registry answered with something that is not JSON",
        {
          cause: err,
        },
      );
    }
    const checked = rizivPractitionerSchema.safeParse(body);
    if (!checked.success) {
      throw new RegistryUnavailableError(
        "malformed",
        "RIZIV registry answer does not match the expected shape",
        {
          cause: checked.error,
        },
      );
    }
    // An answer about another registration must never verify this one. The first 8 digits identify the
    // care provider; the qualification code may have moved on since the user copied their number.
    const answered = checked.data.number.replace(/[\s.\-/]/g, "");
    if (answered.slice(0, 8) !== parsed.normalised.slice(0, 8)) {
      throw new RegistryUnavailableError("malformed", "RIZIV registry answered about a different number");
    }
    return toRecord(checked.data, parsed.normalised);
  };

  return { registry: "RIZIV", validateNumber, lookup };
}
