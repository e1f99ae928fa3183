import type { RegisteredName } from "./types.ts";

/*
 * Does the name a clinician typed fit the name the registry holds for their number?
 *
 * Tolerated: case, extra whitespace, diacritics ("Muller" for "Müller", also "Mueller"), initials for given
 * names ("J.A. de Vries" for Jan Albert), only some initials ("J. de Vries" for J.A.; "A. de Vries" when
 * A. is the call name), the surname prefix before or after ("Vries, J. de"), titles ("dr.", "prof."), and
 * one part of a hyphenated double surname ("Bakker" or "de Vries" for "Bakker-de Vries"), and the
 * partner's name in the forms Dutch name use allows where the register carries it (alternates).
 * Refused: another surname, another or missing surname prefix ("Vries" is a different family from
 * "de Vries"), and initials the registered name does not have.
 *
 * Given names are compared by their initials only: the registry holds official names ("Johannes") and
 * people sign with their call name ("Jan"). The reasons never repeat the registered name: whoever typed a
 * number that is not theirs must not learn whose it is.
 */

export type NameMatch = { ok: true } | { ok: false; reason: string };

const PARTICLES = new Set([
  "van",
  "von",
  "der",
  "den",
  "de",
  "del",
  "della",
  "des",
  "di",
  "da",
  "du",
  "het",
  "'t",
  "ter",
  "ten",
  "te",
  "op",
  "in",
  "uit",
  "la",
  "le",
  "vanden",
  "vander",
  "vande",
  "zu",
]);

const TITLES = new Set([
  "dr",
  "drs",
  "prof",
  "mr",
  "ir",
  "ing",
  "dhr",
  "mevr",
  "mw",
  "md",
  "phd",
  "msc",
  "bsc",
]);

const SPECIAL: Readonly<Record<string, string>> = {
  ß: "ss",
  æ: "ae",
  Æ: "AE",
  ø: "o",
  Ø: "O",
  œ: "oe",
  Œ: "OE",
  ł: "l",
  Ł: "L",
  đ: "d",
  Đ: "D",
  ı: "i",
};

const GERMAN: Readonly<Record<string, string>> = { ä: "ae", ö: "oe", ü: "ue", Ä: "Ae", Ö: "Oe", Ü: "Ue" };

/** Removes diacritics, keeps case (initials are recognised by case). "german" spells ü as ue. */
function fold(s: string, german: boolean): string {
  let out = s.normalize("NFC");
  if (german) out = out.replace(/[äöüÄÖÜ]/g, (c) => GERMAN[c] ?? c);
  out = out.replace(/[ßæÆøØœŒłŁđĐı]/g, (c) => SPECIAL[c] ?? c);
  return out
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .replace(/[’‘`´]/g, "'")
    .replace(/[‐‑–—]/g, "-");
}

/** Lower case, dots opened up so "J.A.de" tokenises, hyphens glued, whitespace collapsed. */
function tidy(s: string): string {
  return s
    .replace(/\./g, ". ")
    .replace(/\s*-\s*/g, "-")
    .replace(/\s+/g, " ")
    .trim();
}

const words = (s: string): string[] => (s === "" ? [] : s.split(" "));
const isParticle = (w: string): boolean => PARTICLES.has(w.toLowerCase());
const isTitle = (w: string): boolean => TITLES.has(w.toLowerCase().replace(/\.$/, ""));

/** Splits leading particles off: "van den Bossche" → prefix "van den", core "bossche". */
function splitPrefix(tokens: string[]): { prefix: string; core: string } {
  let i = 0;
  while (i < tokens.length - 1 && isParticle(tokens[i] ?? "")) i++;
  return {
    prefix: tokens.slice(0, i).join(" ").toLowerCase(),
    core: tokens.slice(i).join(" ").toLowerCase(),
  };
}

interface SurnameForm {
  core: string;
  prefix: string;
}

/** The whole surname, and each part of a hyphenated one, each with the prefix it must carry. */
function surnameForms(reg: RegisteredName, german: boolean): SurnameForm[] {
  const own = splitPrefix(words(tidy(fold(reg.surname, german))));
  const regPrefix = [tidy(fold(reg.prefix ?? "", german)).toLowerCase(), own.prefix]
    .filter((p) => p)
    .join(" ");
  const forms: SurnameForm[] = [{ core: own.core, prefix: regPrefix }];
  if (own.core.includes(" ")) forms.push({ core: own.core.replace(/ /g, "-"), prefix: regPrefix });
  const parts = own.core.split("-");
  if (parts.length > 1) {
    forms.push({ core: own.core.replace(/-/g, " "), prefix: regPrefix });
    parts.forEach((part, i) => {
      const p = splitPrefix(words(part.trim()));
      forms.push({ core: p.core, prefix: [i === 0 ? regPrefix : "", p.prefix].filter((x) => x).join(" ") });
    });
  }
  return forms;
}

/** Initials of given-name words or initials written as "J.A.", "JA", "Th.". */
function initialsFromTokens(
  tokens: string[],
  registeredGiven: Set<string>,
  capsAreInitials: boolean,
): string[] {
  const out: string[] = [];
  for (const t of tokens) {
    if (t.endsWith(".")) {
      out.push(t.charAt(0).toLowerCase());
    } else if (capsAreInitials && /^\p{Lu}{2,3}$/u.test(t) && !registeredGiven.has(t.toLowerCase())) {
      // "JA de Vries": capitals without dots are initials, unless it is literally a registered name ("Bo").
      for (const c of t) out.push(c.toLowerCase());
    } else {
      for (const part of t.split("-")) if (part) out.push(part.charAt(0).toLowerCase());
    }
  }
  return out;
}

function registeredInitials(reg: RegisteredName, german: boolean): string[] {
  if (reg.initials?.trim()) {
    const raw = fold(reg.initials, german).replace(/\s+/g, "");
    if (raw.includes(".")) {
      return raw
        .split(".")
        .filter((p) => p)
        .map((p) => p.charAt(0).toLowerCase());
    }
    return raw.toLowerCase().match(/\p{L}/gu) ?? [];
  }
  return initialsFromTokens(words(tidy(fold(reg.given ?? "", german))), new Set(), false);
}

/** Is `sub` found in `full`, in order (not necessarily adjacent)? */
function isSubsequence(sub: string[], full: string[]): boolean {
  let j = 0;
  for (const c of full) if (j < sub.length && c === sub[j]) j++;
  return j === sub.length;
}

const SURNAME_REASON = "The surname does not match the name registered for this number";

function matchOnce(
  claimed: string,
  reg: RegisteredName,
  claimedGerman: boolean,
  regGerman: boolean,
): NameMatch {
  const c = tidy(fold(claimed, claimedGerman)).replace(/\s*,\s*/g, ",");
  const forms = surnameForms(reg, regGerman).sort((a, b) => b.core.length - a.core.length);
  let givenTokens: string[];
  let claimedPrefix: string;
  let form: SurnameForm | undefined;

  const comma = c.indexOf(",");
  if (comma >= 0) {
    // "Vries, J.A. de" / "de Vries, Jan" / "Vries, de, J.": surname first.
    const left = splitPrefix(words(c.slice(0, comma).trim()).filter((w) => !isTitle(w)));
    form = forms.find((f) => f.core === left.core);
    if (!form) return { ok: false, reason: SURNAME_REASON };
    const rest = words(
      c
        .slice(comma + 1)
        .replace(/,/g, " ")
        .trim(),
    ).filter((w) => !isTitle(w));
    const lead: string[] = [];
    while (rest.length > 0 && isParticle(rest[0] ?? "")) lead.push(rest.shift() ?? "");
    const trail: string[] = [];
    while (rest.length > 0 && isParticle(rest[rest.length - 1] ?? "")) trail.unshift(rest.pop() ?? "");
    claimedPrefix = [left.prefix, ...lead, ...trail]
      .filter((p) => p)
      .join(" ")
      .toLowerCase();
    givenTokens = rest;
  } else {
    // "J.A. de Vries": surname last; the particles right before it are its prefix.
    const tokens = words(c).filter((w) => !isTitle(w));
    const lower = tokens.join(" ").toLowerCase();
    form = forms.find((f) => lower === f.core || lower.endsWith(` ${f.core}`));
    if (!form) return { ok: false, reason: SURNAME_REASON };
    const before = tokens.slice(0, tokens.length - words(form.core).length);
    const prefix: string[] = [];
    while (before.length > 0 && isParticle(before[before.length - 1] ?? ""))
      prefix.unshift(before.pop() ?? "");
    claimedPrefix = prefix.join(" ").toLowerCase();
    givenTokens = before;
  }

  if (claimedPrefix !== form.prefix) {
    return {
      ok: false,
      reason: form.prefix
        ? claimedPrefix
          ? `The surname prefix "${claimedPrefix}" does not match the name registered for this number`
          : 'The registered surname has a prefix (such as "de" or "van") that is missing from the name given'
        : `The registered surname has no prefix "${claimedPrefix}"`,
    };
  }

  const regGiven = new Set(words(tidy(fold(reg.given ?? "", regGerman)).toLowerCase()));
  // In a name typed all in capitals ("JAN DE VRIES"), capitals say nothing about initials.
  const capsAreInitials = /\p{Ll}/u.test(c);
  const claimedInitials = initialsFromTokens(givenTokens, regGiven, capsAreInitials);
  const regInitials = registeredInitials(reg, regGerman);
  if (claimedInitials.length > 0 && regInitials.length > 0 && !isSubsequence(claimedInitials, regInitials)) {
    const shown = claimedInitials.map((i) => `${i.toUpperCase()}.`).join("");
    return {
      ok: false,
      reason: `The initials ${shown} do not match the initials registered for this number`,
    };
  }
  return { ok: true };
}

/**
 * The surnames a person registered with a partner's name may go by, as Dutch name use allows
 * (Basisregistratie Personen "naamgebruik"): the partner's name alone, partner's then own
 * ("Jansen-de Vries"), own then partner's ("de Vries-Jansen"). Belgian practice writes the same
 * double forms. Each comes with the prefix that leads it.
 */
export function partnerNameForms(
  birth: { prefix?: string | undefined; surname: string },
  partner: { prefix?: string | undefined; surname: string },
): { prefix?: string; surname: string }[] {
  const join = (p: string | undefined, s: string): string => [p?.trim(), s.trim()].filter((x) => x).join(" ");
  const partnerSurname = partner.surname.trim();
  if (partnerSurname === "") return [];
  const lead = (prefix: string | undefined, surname: string) =>
    prefix?.trim() ? { prefix: prefix.trim(), surname } : { surname };
  return [
    lead(partner.prefix, partnerSurname),
    lead(partner.prefix, `${partnerSurname}-${join(birth.prefix, birth.surname)}`),
    lead(birth.prefix, `${birth.surname.trim()}-${join(partner.prefix, partnerSurname)}`),
  ];
}

/**
 * The claimed name against every surname the register carries for the person: the birth name,
 * and each of `alternates` (partner name forms, a feed's official or maiden name). A refusal
 * gives the reason of a surname that matched (its prefix or initials did not), else the
 * surname's.
 */
export function matchesRegisteredName(claimed: string, registered: RegisteredName): NameMatch {
  const { prefix: _birthPrefix, alternates = [], ...rest } = registered;
  const candidates: RegisteredName[] = [
    registered,
    ...alternates.map((alt) => ({
      ...rest,
      surname: alt.surname,
      ...(alt.prefix ? { prefix: alt.prefix } : {}),
    })),
  ];
  let refusal: NameMatch | undefined;
  for (const candidate of candidates) {
    const r = matchesOneName(claimed, candidate);
    if (r.ok) return r;
    if (refusal === undefined || (!refusal.ok && refusal.reason === SURNAME_REASON)) refusal = r;
  }
  return refusal ?? { ok: false, reason: SURNAME_REASON };
}

function matchesOneName(claimed: string, registered: RegisteredName): NameMatch {
  if (claimed.trim() === "") return { ok: false, reason: "No name was given" };
  if (registered.surname.trim() === "")
    return { ok: false, reason: "The registry holds no surname for this number" };
  // ü may be written u or ue on either side; the plain spelling's reason is the one reported.
  const first = matchOnce(claimed, registered, false, false);
  if (first.ok) return first;
  for (const [cg, rg] of [
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    if (matchOnce(claimed, registered, cg, rg).ok) return { ok: true };
  }
  return first;
}
