import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createRizivRegistry,
  formatRizivNumber,
  parseRizivNumber,
  rizivCheckDigits,
  type RizivPractitioner,
} from "./client.ts";
import { startRizivTestServer, type RizivTestServer } from "./test-server.ts";
import { matchesRegisteredName } from "../name-match.ts";
import { RegistryUnavailableError } from "../types.ts";

function reasonOf(input: string): string {
  const r = parseRizivNumber(input);
  return r.ok ? "(accepted)" : r.reason;
}

/** A number built by the rule: profession digit + 5-digit sequence, check digits, qualification. */
function make(base6: string, qualification: string, scheme: "mod97" | "mod89" = "mod97"): string {
  return `${base6}${rizivCheckDigits(base6)[scheme]}${qualification}`;
}

describe("parseRizivNumber", () => {
  it("accepts published numbers (mod 97 and mod 89)", () => {
    // 1-08290-59: HL7 Belgium FHIR examples (nihdi-professional, first 8 digits), qualification added here.
    const a = parseRizivNumber("1-08290-59-000");
    expect(a).toMatchObject({
      ok: true,
      normalised: "10829059000",
      checkScheme: "mod97",
      profession: "physician",
    });
    // 101.85748.004: a physician's number as printed on a practice website.
    const b = parseRizivNumber("101.85748.004");
    expect(b).toMatchObject({
      ok: true,
      normalised: "10185748004",
      checkScheme: "mod89",
      qualification: "004",
    });
  });

  it.each([
    ["123456", "003", "mod97"],
    ["312345", "001", "mod97"],
    ["456789", "401", "mod89"],
    ["500001", "000", "mod97"],
    ["600097", "000", "mod89"],
    ["194000", "580", "mod97"],
  ] as const)("accepts generated number %s…%s (%s)", (base, q, scheme) => {
    const n = make(base, q, scheme);
    const r = parseRizivNumber(n);
    expect(r).toMatchObject({ ok: true, normalised: n, qualification: q, checkScheme: scheme });
  });

  it("computes 97 − (base mod 97) and 89 − (base mod 89), two digits", () => {
    expect(rizivCheckDigits("108290").mod97).toBe("59");
    expect(rizivCheckDigits("101857").mod89).toBe("48");
    // A base divisible by 97 gets 97, not 00.
    expect(rizivCheckDigits("100007").mod97).toBe("97");
    // Small remainders keep a leading zero: 97 − 90 = 07.
    const base = String(97 * 1100 + 90 + 97 * 30);
    expect(rizivCheckDigits(base).mod97).toBe("07");
  });

  it("accepts formatting variants", () => {
    const n = make("123456", "004");
    const variants = [
      n,
      formatRizivNumber(n),
      `${n.slice(0, 1)} ${n.slice(1, 6)} ${n.slice(6, 8)} ${n.slice(8)}`,
      `${n.slice(0, 3)}.${n.slice(3, 8)}.${n.slice(8)}`,
      `  ${formatRizivNumber(n)}  `,
      `${n.slice(0, 1)}/${n.slice(1, 6)}/${n.slice(6, 8)}/${n.slice(8)}`,
    ];
    for (const v of variants) expect(parseRizivNumber(v)).toMatchObject({ ok: true, normalised: n });
    expect(formatRizivNumber(n)).toMatch(/^1-23456-\d\d-004$/);
  });

  it("rejects wrong check digits, lengths and characters with a reason", () => {
    const n = make("123456", "004");
    const wrong = `${n.slice(0, 6)}${String((Number(n.slice(6, 8)) + 1) % 100).padStart(2, "0")}${n.slice(8)}`;
    const r = parseRizivNumber(wrong);
    // The other scheme could accidentally match the altered digits; this base does not.
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/check digits/);
    // Transposed digits in the base.
    expect(parseRizivNumber(`132456${n.slice(6)}`).ok).toBe(false);
    expect(parseRizivNumber("")).toMatchObject({ ok: false });
    expect(reasonOf("1234567890")).toMatch(/11 digits/);
    expect(reasonOf("10829059")).toMatch(/first 8/);
    expect(reasonOf("1-2345A-78-901")).toMatch(/digits/);
  });

  it("refuses institution and unknown profession digits", () => {
    expect(reasonOf(make("712345", "000"))).toMatch(/hospital/);
    expect(parseRizivNumber(make("812345", "000"))).toMatchObject({ ok: false });
    expect(parseRizivNumber(make("012345", "000"))).toMatchObject({ ok: false });
  });

  it("names professions and known physician qualifications", () => {
    expect(parseRizivNumber(make("123456", "004"))).toMatchObject({
      profession: "physician",
      qualificationLabel: "recognised general practitioner, accredited",
    });
    expect(parseRizivNumber(make("123456", "000"))).toMatchObject({
      qualificationLabel: "physician (diploma holder)",
    });
    expect(parseRizivNumber(make("323456", "001"))).toMatchObject({
      profession: "dentist",
      qualificationLabel: "qualification code 001",
    });
    expect(parseRizivNumber(make("423456", "401"))).toMatchObject({ profession: "nurse or midwife" });
    expect(parseRizivNumber(make("623456", "000"))).toMatchObject({ profession: "pharmacist" });
  });
});

describe("createRizivRegistry", () => {
  const active = make("123456", "004");
  const suspended = make("123457", "004", "mod89");
  const deceased = make("423458", "401");
  const unknown = make("199999", "000");
  const married = make("123459", "000");
  const records: RizivPractitioner[] = [
    {
      number: married,
      firstName: "Anne",
      lastName: "Dubois",
      partnerLastName: "Martin",
      profession: "physician",
      qualification: "000",
      specialisms: [],
      status: "active",
    },
    {
      number: formatRizivNumber(active),
      firstName: "Jan Albert",
      lastName: "Van den Bossche",
      profession: "physician",
      qualification: "004",
      specialisms: ["general practice"],
      status: "active",
    },
    {
      number: suspended,
      firstName: "Marie",
      lastName: "Dubois",
      profession: "physician",
      qualification: "004",
      specialisms: [],
      status: "suspended",
    },
    {
      number: deceased,
      firstName: "Els",
      lastName: "Peeters",
      profession: "nurse",
      qualification: "401",
      specialisms: [],
      status: "deceased",
    },
  ];
  let server: RizivTestServer;

  beforeAll(async () => {
    server = await startRizivTestServer(records, { delayMs: 1_000 });
  });
  afterAll(async () => {
    await server.stop();
  });

  const registry = () => createRizivRegistry({ url: `${server.url}/`, timeoutMs: 300 });

  it("validates numbers before asking", () => {
    expect(registry().registry).toBe("RIZIV");
    expect(registry().validateNumber(formatRizivNumber(active))).toEqual({ ok: true, normalised: active });
    expect(registry().validateNumber("1-23456-00-004").ok).toBe(false);
  });

  it("finds an active registration", async () => {
    server.setMode("normal");
    const r = await registry().lookup(formatRizivNumber(active));
    expect(r).toEqual({
      registry: "RIZIV",
      number: active,
      name: {
        full: "Jan Albert Van den Bossche",
        surname: "Van den Bossche",
        given: "Jan Albert",
        initials: "J.A.",
      },
      profession: "physician",
      specialisms: ["general practice"],
      status: "active",
    });
  });

  it("reads the contract's optional partnerLastName as partner name forms", async () => {
    server.setMode("normal");
    const name = (await registry().lookup(married))?.name;
    expect(name?.alternates).toEqual([
      { surname: "Martin" },
      { surname: "Martin-Dubois" },
      { surname: "Dubois-Martin" },
    ]);
    expect(matchesRegisteredName("A. Dubois-Martin", name ?? { full: "", surname: "" })).toEqual({
      ok: true,
    });
    expect(matchesRegisteredName("A. Lambert", name ?? { full: "", surname: "" }).ok).toBe(false);
  });

  it("returns undefined for an unknown number (404) and for an impossible one", async () => {
    server.setMode("normal");
    expect(await registry().lookup(unknown)).toBeUndefined();
    expect(await registry().lookup("12345")).toBeUndefined();
  });

  it("reports suspended, and deceased as struck off", async () => {
    server.setMode("normal");
    expect((await registry().lookup(suspended))?.status).toBe("suspended");
    expect((await registry().lookup(deceased))?.status).toBe("struck_off");
  });

  it.each([
    ["malformed", "malformed"],
    ["http500", "http"],
    ["slow", "timeout"],
  ] as const)("mode %s → RegistryUnavailableError(%s)", async (mode, kind) => {
    server.setMode(mode);
    try {
      const err = await registry()
        .lookup(active)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(RegistryUnavailableError);
      expect((err as RegistryUnavailableError).kind).toBe(kind);
    } finally {
      server.setMode("normal");
    }
  });

  it("reports an unreachable registry as a fault", async () => {
    const down = createRizivRegistry({ url: "http://127.0.0.1:1", timeoutMs: 1_000 });
    await expect(down.lookup(active)).rejects.toMatchObject({ kind: "fault" });
  });

  it("passes the caller's abort through unchanged", async () => {
    server.setMode("slow");
    try {
      const ac = new AbortController();
      const p = createRizivRegistry({ url: server.url, timeoutMs: 5_000 }).lookup(active, {
        signal: ac.signal,
      });
      ac.abort(new Error("shutting down"));
      await expect(p).rejects.toThrow("shutting down");
    } finally {
      server.setMode("normal");
    }
  });
});
