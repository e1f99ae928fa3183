import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  loadRegistryExtract,
  normaliseExtractNumber,
  parseRegistryExtract,
  RegistryExtractError,
} from "./extract.ts";
import { matchesRegisteredName } from "../name-match.ts";
import { RegistryUnavailableError } from "../types.ts";

const HEADER = "registry,number,initials,prefix,surname,given,profession,specialisms,status";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "medmesh-extract-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: string, mtime?: Date): string {
  const file = join(dir, name);
  writeFileSync(file, content);
  if (mtime) utimesSync(file, mtime, mtime);
  return file;
}

describe("CSV extracts", () => {
  it("reads rows, quoted fields, doubled quotes and specialisms", async () => {
    const file = write(
      "net.csv",
      [
        HEADER,
        'NETZORG,12-345.67,J.A.,de,Vries,Jan Albert,physician,"cardiology; internal medicine",active',
        'NETZORG,A7781,,,"Müller, Jr.",Hans,nurse,,suspended',
        'NETZORG,88,P.,,"O""Brien",,pharmacist,,struck_off',
        "",
      ].join("\r\n"),
    );
    const reg = loadRegistryExtract(file);
    expect(reg.registry).toBe("NETZORG");
    expect(await reg.lookup("1234567")).toEqual({
      registry: "NETZORG",
      number: "1234567",
      name: {
        full: "Jan Albert de Vries",
        initials: "J.A.",
        prefix: "de",
        surname: "Vries",
        given: "Jan Albert",
      },
      profession: "physician",
      specialisms: ["cardiology", "internal medicine"],
      status: "active",
    });
    expect((await reg.lookup("a7781"))?.name.surname).toBe("Müller, Jr.");
    expect((await reg.lookup("a7781"))?.status).toBe("suspended");
    const obrien = await reg.lookup("88");
    expect(obrien?.name).toEqual({ full: 'P. O"Brien', initials: "P.", surname: 'O"Brien' });
    expect(obrien?.status).toBe("struck_off");
    expect(await reg.lookup("99")).toBeUndefined();
  });

  it("reads the optional partner name columns; the name match accepts the partner name forms", () => {
    const { records } = parseRegistryExtract(
      `${HEADER},partner_prefix,partner_surname\nBIG,1,M.,de,Vries,,physician,,active,,Jansen\nBIG,2,P.,,Oud,,nurse,,active,,\n`,
      "x.csv",
    );
    const maria = records.get("1")?.name;
    expect(maria?.alternates).toContainEqual({ surname: "Jansen-de Vries" });
    expect(matchesRegisteredName("M. Jansen-de Vries", maria ?? { full: "", surname: "" })).toEqual({
      ok: true,
    });
    expect(matchesRegisteredName("M. Pietersen", maria ?? { full: "", surname: "" }).ok).toBe(false);
    expect(records.get("2")?.name).not.toHaveProperty("alternates");
    expect(() => parseRegistryExtract(`${HEADER},partner\n`, "x.csv")).toThrow(/unknown: partner/);
  });

  it('names the registry "extract" when the file does not', async () => {
    const reg = loadRegistryExtract(write("x.csv", `${HEADER}\n,1,,,Jansen,,nurse,,active\n`));
    expect(reg.registry).toBe("extract");
    expect((await reg.lookup("1"))?.registry).toBe("extract");
  });

  it("accepts a quoted field spanning lines and keeps line numbers of later rows right", () => {
    const text = `${HEADER}\nR,1,,,"Jansen\nBakker",,nurse,,active\nR,2,,,Smit,,nurse,,retired\n`;
    expect(() => parseRegistryExtract(text, "f.csv")).toThrow('f.csv: line 4, field "status"');
  });

  it.each([
    [`${HEADER}\nR,1,,,,,nurse,,active\n`, 'x.csv: line 2, field "surname": the surname is empty'],
    [`${HEADER}\nR,1,,,Jansen,,nurse,,active\nR,2,,,Smit,,,,active\n`, 'x.csv: line 3, field "profession"'],
    [
      `${HEADER}\nR,12#4,,,Jansen,,nurse,,active\n`,
      'x.csv: line 2, field "number": A registration number contains only',
    ],
    [`${HEADER}\nR,,,,Jansen,,nurse,,active\n`, 'x.csv: line 2, field "number": No registration number'],
    [`${HEADER}\nR,1,,,Jansen,,nurse,,retired\n`, 'x.csv: line 2, field "status": the status must be'],
    [`${HEADER}\nR,1,,,Jansen,,nurse,active\n`, "x.csv: line 2: 8 fields where the header has 9"],
    [`${HEADER}\nR,1,,,"Jansen,,nurse,,active\n`, "x.csv: line 2: a quoted field is never closed"],
    [`${HEADER}\nR,1,,,Jan"sen,,nurse,,active\n`, "x.csv: line 2: a quote inside an unquoted field"],
    ["registry,number,surname\n", "x.csv: line 1: the header must be"],
    ["", "x.csv: the file is empty"],
    [
      `${HEADER}\nA,1,,,Jansen,,nurse,,active\nB,2,,,Smit,,nurse,,active\n`,
      'x.csv: line 3, field "registry"',
    ],
  ])("refuses a bad file: %#", (text, message) => {
    expect(() => parseRegistryExtract(text, "x.csv")).toThrow(RegistryExtractError);
    expect(() => parseRegistryExtract(text, "x.csv")).toThrow(message);
  });

  it("refuses duplicate numbers, also when written differently, without printing the number", () => {
    const text = `${HEADER}\nR,123-45,,,Jansen,,nurse,,active\nR,1,,,Smit,,nurse,,active\nR,12345,,,Bakker,,nurse,,active\n`;
    let message = "";
    try {
      parseRegistryExtract(text, "x.csv");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe('x.csv: line 4, field "number": the same number as line 2');
    expect(message).not.toContain("12345");
  });

  it("fails at load time on a broken file", () => {
    const file = write("bad.csv", `${HEADER}\nR,1,,,,,nurse,,active\n`);
    expect(() => loadRegistryExtract(file)).toThrow(`${file}: line 2, field "surname"`);
  });
});

describe("JSON extracts", () => {
  it("reads records with the same fields", async () => {
    const file = write(
      "net.json",
      JSON.stringify({
        registry: "EU-NET",
        records: [
          {
            number: "AB-12",
            surname: "Çelik",
            given: "Ayşe",
            profession: "physician",
            specialisms: ["surgery"],
            status: "active",
          },
          {
            number: "77",
            initials: "K.",
            prefix: "van der",
            surname: "Berg",
            profession: "nurse",
            specialisms: "a;b",
            status: "Active",
          },
        ],
      }),
    );
    const reg = loadRegistryExtract(file);
    expect(reg.registry).toBe("EU-NET");
    expect(await reg.lookup("ab12")).toMatchObject({
      registry: "EU-NET",
      name: { full: "Ayşe Çelik" },
      specialisms: ["surgery"],
    });
    expect(await reg.lookup("77")).toMatchObject({
      name: { full: "K. van der Berg", prefix: "van der" },
      specialisms: ["a", "b"],
    });
  });

  it.each([
    [
      { records: [{ number: "1", surname: "X", profession: "nurse" }] },
      'x.json: record 1, field "status": is missing',
    ],
    [
      {
        records: [
          { number: "1", surname: "X", profession: "nurse", status: "active" },
          { number: 2, surname: "Y", profession: "nurse", status: "active" },
        ],
      },
      'x.json: record 2, field "number": must be text',
    ],
    [
      {
        records: [
          { number: "1", surname: "X", profession: "nurse", status: "active" },
          { number: "1", surname: "Y", profession: "nurse", status: "active" },
        ],
      },
      'x.json: record 2, field "number": the same number as record 1',
    ],
    [{ people: [] }, "x.json: expected {"],
  ])("refuses a bad file: %#", (data, message) => {
    expect(() => parseRegistryExtract(JSON.stringify(data), "x.json")).toThrow(message);
  });

  it("refuses broken JSON", () => {
    expect(() => parseRegistryExtract('{"records": [', "x.json")).toThrow("x.json: not valid JSON");
  });
});

describe("reloading", () => {
  it("re-reads the file when it changed", async () => {
    const file = write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,active\n`, new Date(2025, 0, 1));
    const reg = loadRegistryExtract(file);
    expect((await reg.lookup("1"))?.status).toBe("active");
    expect(await reg.lookup("2")).toBeUndefined();

    write(
      "r.csv",
      `${HEADER}\nR,1,,,Jansen,,nurse,,struck_off\nR,2,,,Smit,,nurse,,active\n`,
      new Date(2025, 0, 2),
    );
    const [a, b] = await Promise.all([reg.lookup("1"), reg.lookup("2")]);
    expect(a?.status).toBe("struck_off");
    expect(b?.name.surname).toBe("Smit");
  });

  it("does not re-read an unchanged file", async () => {
    const when = new Date(2025, 0, 1);
    const file = write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,active\n`, when);
    const reg = loadRegistryExtract(file);
    // Same size and mtime: a change the fingerprint cannot see, so the old content is served.
    write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,active\n`.replace("Jansen", "Jonsen"), when);
    expect((await reg.lookup("1"))?.name.surname).toBe("Jansen");
  });

  it("reports a broken new version as malformed instead of serving the old one", async () => {
    const file = write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,active\n`, new Date(2025, 0, 1));
    const reg = loadRegistryExtract(file);
    write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,gone\n`, new Date(2025, 0, 2));
    const err = await reg.lookup("1").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RegistryUnavailableError);
    expect((err as RegistryUnavailableError).kind).toBe("malformed");
    expect((err as Error).message).toContain('line 2, field "status"');
    // Fixed again: served again.
    write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,suspended\n`, new Date(2025, 0, 3));
    expect((await reg.lookup("1"))?.status).toBe("suspended");
  });

  it("reports a vanished file as a fault and refuses a registry change", async () => {
    const file = write("r.csv", `${HEADER}\nR,1,,,Jansen,,nurse,,active\n`, new Date(2025, 0, 1));
    const reg = loadRegistryExtract(file);
    write("r.csv", `${HEADER}\nOTHER,1,,,Jansen,,nurse,,active\n`, new Date(2025, 0, 2));
    await expect(reg.lookup("1")).rejects.toMatchObject({ kind: "malformed" });
    rmSync(file);
    await expect(reg.lookup("1")).rejects.toMatchObject({ kind: "fault" });
  });
});

describe("normaliseExtractNumber", () => {
  it("keeps letters and digits, drops separators, refuses the rest", () => {
    expect(normaliseExtractNumber(" ab-12.3 ")).toEqual({ ok: true, normalised: "AB123" });
    expect(normaliseExtractNumber(" - ")).toMatchObject({ ok: false });
    expect(normaliseExtractNumber("12_3")).toMatchObject({ ok: false });
  });
});
