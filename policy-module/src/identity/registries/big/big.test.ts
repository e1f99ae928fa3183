import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BIG_SOAP_ACTION,
  bigRequestEnvelope,
  createBigRegistry,
  normaliseBigNumber,
  readBigAnswer,
} from "./client.ts";
import { startBigTestServer, type BigTestRecord, type BigTestServer } from "./test-server.ts";
import { matchesRegisteredName } from "../name-match.ts";
import { RegistryUnavailableError } from "../types.ts";
import { parseXml, type XmlElement } from "../xml.ts";

const DAY = 86_400_000;
const isoDay = (offsetDays: number): string =>
  new Date(Date.now() + offsetDays * DAY).toISOString().slice(0, 10);

const ANN: BigTestRecord = {
  number: "19012345601",
  initials: "A.",
  prefix: "de",
  surname: "Vries",
  mailingName: "A. de Vries",
  professionCode: "01",
  specialisms: ["10", "999"],
};
const OLD: BigTestRecord = {
  number: "29012345602",
  initials: "P.",
  surname: "Oud",
  mailingName: "P. Oud",
  professionCode: "30",
  registrationEnd: isoDay(-400),
};
const SUS: BigTestRecord = {
  number: "39012345603",
  initials: "S.",
  surname: "Smit",
  mailingName: "S. Smit",
  professionCode: "17",
  suspendedFrom: isoDay(-30),
  suspendedUntil: isoDay(60),
};
/** Leading zero: the service writes the number as xs:decimal, without it. */
const ZED: BigTestRecord = {
  number: "09012345604",
  initials: "Z.",
  surname: "Zee",
  mailingName: "Z. Zee",
  professionCode: "81",
};
const PAST_SUS: BigTestRecord = { ...SUS, number: "49012345605", suspendedUntil: isoDay(-1) };
const INDEFINITE: BigTestRecord = { ...SUS, number: "59012345606", suspendedFrom: isoDay(-1) };
const LATER_END: BigTestRecord = { ...OLD, number: "69012345607", registrationEnd: isoDay(365) };
const ODD_GROUP: BigTestRecord = {
  number: "79012345608",
  initials: "Q.",
  surname: "Onbekend",
  mailingName: "Q. Onbekend",
  professionCode: "77",
};

/** Registered under her birth name de Vries, using her partner's name Jansen (PartnerName). */
const MARIA: BigTestRecord = {
  number: "89012345609",
  initials: "M.",
  prefix: "de",
  surname: "Vries",
  partnerSurname: "Jansen",
  mailingName: "M. Jansen-de Vries",
  professionCode: "01",
};

const ALL_NUMBERS = [ANN, OLD, SUS, ZED, PAST_SUS, INDEFINITE, LATER_END, ODD_GROUP, MARIA].map(
  (r) => r.number,
);
/** No error message may carry a BIG number, in either written form. */
function expectNoNumber(message: string): void {
  for (const n of ALL_NUMBERS) {
    expect(message).not.toContain(n);
    expect(message).not.toContain(n.replace(/^0+/, ""));
  }
}

async function errorOf(p: Promise<unknown>): Promise<RegistryUnavailableError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryUnavailableError);
  const e = err as RegistryUnavailableError;
  expectNoNumber(e.message);
  return e;
}

const only = (e: XmlElement | undefined, name: string) => e?.children.find((c) => c.name === name);

describe("BIG number format", () => {
  it("accepts 11 digits, with spaces and leading zeros", () => {
    expect(normaliseBigNumber(" 190 1234 5601 ")).toEqual({ ok: true, normalised: "19012345601" });
    expect(normaliseBigNumber("09012345604")).toEqual({ ok: true, normalised: "09012345604" });
  });

  it("refuses anything else with a clear reason that does not repeat the input", () => {
    const reasons = ["", "1901234560", "190123456011", "1901234560A", "190-1234-5601"].map((n) => {
      const r = normaliseBigNumber(n);
      expect(r.ok).toBe(false);
      return r.ok ? "" : r.reason;
    });
    expect(reasons).toEqual([
      "No BIG number was given",
      "A BIG number has 11 digits; this one has 10",
      "A BIG number has 11 digits; this one has 12",
      "A BIG number contains only digits (and spaces)",
      "A BIG number contains only digits (and spaces)",
    ]);
  });
});

describe("BIG-register adapter against the test server", () => {
  let server: BigTestServer;
  beforeAll(async () => {
    server = await startBigTestServer([
      ANN,
      OLD,
      SUS,
      ZED,
      PAST_SUS,
      INDEFINITE,
      LATER_END,
      ODD_GROUP,
      MARIA,
    ]);
  });
  afterAll(() => server.stop());
  const big = (timeoutMs = 2000) => createBigRegistry({ url: server.url, timeoutMs });

  it("reads an active physician with name, profession and specialisms", async () => {
    expect(big().registry).toBe("BIG");
    expect(await big().lookup(ANN.number)).toEqual({
      registry: "BIG",
      number: ANN.number,
      name: { full: "A. de Vries", surname: "Vries", prefix: "de", initials: "A." },
      profession: "physician",
      specialisms: ["cardiology", "BIG specialism 999"],
      status: "active",
    });
  });

  it("reads the partner name (PartnerName, PartnerNamePrefix), and the name match accepts its forms", async () => {
    const record = await big().lookup(MARIA.number);
    expect(record?.name).toEqual({
      full: "M. Jansen-de Vries",
      surname: "Vries",
      prefix: "de",
      initials: "M.",
      alternates: [
        { surname: "Jansen" },
        { surname: "Jansen-de Vries" },
        { prefix: "de", surname: "Vries-Jansen" },
      ],
    });
    const name = record?.name ?? { full: "", surname: "" };
    for (const claimed of ["M. Jansen-de Vries", "M. de Vries-Jansen", "M. Jansen", "M. de Vries"])
      expect(matchesRegisteredName(claimed, name), claimed).toEqual({ ok: true });
    expect(matchesRegisteredName("M. Bakker", name).ok).toBe(false);
    // Without a partner name in the answer, only the birth name and its parts.
    expect((await big().lookup(ANN.number))?.name).not.toHaveProperty("alternates");
  });

  it("sends a well-formed SOAP 1.1 request that carries the number", async () => {
    await big().lookup("190 1234 5601");
    const seen = server.lastRequest;
    expect(seen).toMatchObject({
      method: "POST",
      soapAction: `"${BIG_SOAP_ACTION}"`,
      contentType: "text/xml; charset=utf-8",
      number: ANN.number,
    });
    const doc = parseXml(seen!.body);
    const request = only(only(doc, "Body"), "listHcpApproxRequest");
    expect(doc.name).toBe("Envelope");
    expect(only(request, "WebSite")?.text).toBe("Ribiz");
    expect(only(request, "RegistrationNumber")?.text).toBe(ANN.number);
    expect(seen!.body).toContain('xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"');
    expect(seen!.body).toContain('<listHcpApproxRequest xmlns="http://services.cibg.nl/ExternalUser">');
  });

  it("escapes what it puts into the envelope", () => {
    const doc = parseXml(bigRequestEnvelope(`<a href="x">&'`));
    expect(only(only(only(doc, "Body"), "listHcpApproxRequest"), "RegistrationNumber")?.text).toBe(
      `<a href="x">&'`,
    );
  });

  it("matches a number whose leading zero the service drops, and maps the professional group", async () => {
    expect(await big().lookup(ZED.number)).toMatchObject({
      number: ZED.number,
      profession: "physician assistant",
      status: "active",
    });
    expect(await big().lookup(ODD_GROUP.number)).toMatchObject({ profession: "BIG professional group 77" });
  });

  it("reports struck off (ended registration) and suspended (measure in force)", async () => {
    expect(await big().lookup(OLD.number)).toMatchObject({ status: "struck_off", profession: "nurse" });
    expect(await big().lookup(SUS.number)).toMatchObject({ status: "suspended", profession: "pharmacist" });
    expect(await big().lookup(INDEFINITE.number)).toMatchObject({ status: "suspended" });
    expect(await big().lookup(PAST_SUS.number)).toMatchObject({ status: "active" });
    expect(await big().lookup(LATER_END.number)).toMatchObject({ status: "active" });
  });

  it("answers undefined for an unknown number, and does not ask about an impossible one", async () => {
    expect(await big().lookup("99999999999")).toBeUndefined();
    const before = server.requests;
    expect(await big().lookup("12345")).toBeUndefined();
    expect(server.requests).toBe(before);
  });

  it("turns a SOAP fault into a fault error, without the number the service echoed", async () => {
    server.setMode("fault");
    try {
      const e = await errorOf(big().lookup(ANN.number));
      expect(e.kind).toBe("fault");
      expect(e.message).toMatch(/^BIG-register fault: Unable to process request for RegistrationNumber/);
    } finally {
      server.setMode("normal");
    }
  });

  it("turns cut-off XML into malformed, an HTML 500 into http, and a stall into timeout", async () => {
    const cases = [
      ["malformed", 2000, "malformed", /not well-formed XML/],
      ["http500", 2000, "http", /HTTP 500/],
      ["slow", 200, "timeout", /did not answer within 200 ms/],
    ] as const;
    try {
      for (const [mode, timeoutMs, kind, message] of cases) {
        server.setMode(mode);
        const e = await errorOf(big(timeoutMs).lookup(ANN.number));
        expect({ kind: e.kind, message: e.message }).toEqual({
          kind,
          message: expect.stringMatching(message) as unknown,
        });
      }
    } finally {
      server.setMode("normal");
    }
  });

  it("lets the caller's own abort through as it is", async () => {
    server.setMode("slow");
    try {
      const controller = new AbortController();
      const p = big(5000).lookup(ANN.number, { signal: controller.signal });
      controller.abort(new Error("shutting down"));
      await expect(p).rejects.toThrow("shutting down");
    } finally {
      server.setMode("normal");
    }
  });

  it("answers a request that is not a proper SOAP call with a SOAP fault, as the real service does", async () => {
    const post = (headers: Record<string, string>, body: string) =>
      fetch(server.url, { method: "POST", headers, body }).then(async (r) => ({
        status: r.status,
        text: await r.text(),
      }));
    const wrongAction = await post({ soapaction: "urn:x" }, bigRequestEnvelope(ANN.number));
    expect(wrongAction.status).toBe(500);
    expect(wrongAction.text).toMatch(/<faultstring>Server did not recognize the SOAPAction header/);
    const notSoap = await post({ soapaction: BIG_SOAP_ACTION }, "<listHcpApproxRequest/>");
    expect(notSoap.status).toBe(500);
    expect(notSoap.text).toMatch(/<soap:Fault>.*not a SOAP envelope/);
    // And the adapter reads such a fault as one.
    expect(() => readBigAnswer(500, notSoap.text, ANN.number)).toThrow(/fault: The request is not a SOAP/);
  });
});

describe("reading ListHcpApprox4 answers", () => {
  const env = (body: string) =>
    `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>${body}</s:Body></s:Envelope>`;
  const result = (entries: string) =>
    env(
      `<ListHcpApprox4Result xmlns="http://services.cibg.nl/ExternalUser"><ListHcpApprox>${entries}` +
        `</ListHcpApprox></ListHcpApprox4Result>`,
    );
  const hcp = (inner: string) =>
    `<ListHcpApprox4><BirthSurname>Berg</BirthSurname><MailingName>J. van den Berg</MailingName>` +
    `<Initial>J.</Initial>${inner}</ListHcpApprox4>`;
  const reg = (n: string, end = "0001-01-01T00:00:00") =>
    `<ArticleRegistration><ArticleRegistrationExtApp><ArticleRegistrationNumber>${n}</ArticleRegistrationNumber>` +
    `<ArticleRegistrationStartDate>2001-01-01T00:00:00</ArticleRegistrationStartDate>` +
    `<ArticleRegistrationEndDate>${end}</ArticleRegistrationEndDate>` +
    `<ProfessionalGroupCode>02</ProfessionalGroupCode></ArticleRegistrationExtApp></ArticleRegistration>`;
  const N = "19012345601";
  const kindOf = (status: number, body: string): string => {
    try {
      readBigAnswer(status, body, N);
      return "no error";
    } catch (e) {
      expect(e).toBeInstanceOf(RegistryUnavailableError);
      expectNoNumber((e as Error).message);
      return (e as RegistryUnavailableError).kind;
    }
  };

  it("treats an absent or empty list as an unknown number", () => {
    expect(readBigAnswer(200, env(`<ListHcpApprox4Result xmlns="x"/>`), N)).toBeUndefined();
    expect(readBigAnswer(200, result(""), N)).toBeUndefined();
  });

  it("picks the registration asked about and ignores another registration's measures", () => {
    const twoRegistrations =
      `<ArticleRegistration><ArticleRegistrationExtApp><ArticleRegistrationNumber>29012345602` +
      `</ArticleRegistrationNumber><ArticleRegistrationEndDate>2001-01-01T00:00:00</ArticleRegistrationEndDate>` +
      `<ProfessionalGroupCode>30</ProfessionalGroupCode></ArticleRegistrationExtApp>` +
      reg(N).replace("<ArticleRegistration>", "").replace("</ArticleRegistration>", "") +
      `</ArticleRegistration><JudgmentProvision><JudgmentProvisionExtApp><ArticleNumber>29012345602` +
      `</ArticleNumber><Id>1</Id><StartDate>2000-01-01T00:00:00</StartDate><EndDate xsi:nil="true"/>` +
      `</JudgmentProvisionExtApp></JudgmentProvision>`;
    expect(readBigAnswer(200, result(hcp(twoRegistrations)), N)).toMatchObject({
      profession: "dentist",
      status: "active",
      name: { full: "J. van den Berg", surname: "Berg", initials: "J." },
    });
  });

  it("also reads the brief's 'JudgementProvision' spelling", () => {
    const measure =
      `<JudgementProvision><JudgementProvisionExtApp><ArticleNumber>${N}</ArticleNumber>` +
      `<StartDate>2000-01-01T00:00:00</StartDate><EndDate/></JudgementProvisionExtApp></JudgementProvision>`;
    expect(readBigAnswer(200, result(hcp(reg(N) + measure)), N)?.status).toBe("suspended");
  });

  it("classifies faults, HTTP errors and unusable answers", () => {
    const fault = env(`<s:Fault><faultcode>s:Server</faultcode><faultstring>No ${N}</faultstring></s:Fault>`);
    expect(kindOf(200, fault)).toBe("fault");
    expect(kindOf(500, fault)).toBe("fault");
    expect(kindOf(503, env("<Busy/>"))).toBe("http");
    expect(kindOf(502, "Bad gateway")).toBe("http");
    expect(kindOf(200, "<html><body>maintenance</body></html>")).toBe("malformed");
    expect(kindOf(200, env("<Other/>"))).toBe("malformed");
    expect(kindOf(200, `${result("")}<!DOCTYPE x>`)).toBe("malformed");
    // An answer about someone else, a missing name, a missing end date, an unreadable date.
    expect(kindOf(200, result(hcp(reg("29012345602"))))).toBe("malformed");
    expect(kindOf(200, result(hcp(reg(N)).replace(/<BirthSurname>Berg<\/BirthSurname>/, "")))).toBe(
      "malformed",
    );
    expect(
      kindOf(
        200,
        result(hcp(reg(N).replace(/<ArticleRegistrationEndDate>.*?<\/ArticleRegistrationEndDate>/, ""))),
      ),
    ).toBe("malformed");
    expect(kindOf(200, result(hcp(reg(N, "soon"))))).toBe("malformed");
  });
});

describe("BIG test server under load", () => {
  it("answers many concurrent lookups from a large register", async () => {
    const records = Array.from({ length: 20_000 }, (_, i) => ({
      number: String(10_000_000_000 + i),
      initials: "T.",
      surname: `Test${i}`,
      mailingName: `T. Test${i}`,
      professionCode: "01",
    }));
    const server = await startBigTestServer(records, { delayMs: 20 });
    try {
      const big = createBigRegistry({ url: server.url, timeoutMs: 10_000 });
      const picks = Array.from({ length: 300 }, (_, i) => records[(i * 67) % records.length]!);
      const answers = await Promise.all(picks.map((r) => big.lookup(r.number)));
      expect(answers.map((a) => a?.name.surname)).toEqual(picks.map((r) => r.surname));
      expect(server.requests).toBe(300);
    } finally {
      await server.stop();
    }
  });
});
