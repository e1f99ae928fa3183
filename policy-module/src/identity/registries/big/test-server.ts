import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { BIG_NAMESPACE, BIG_SOAP_ACTION, SOAP_ENVELOPE_NAMESPACE } from "./client.ts";
import { escapeXml, parseXml, type XmlElement } from "../xml.ts";

export interface BigTestRecord {
  /** 11 digits; spaces are ignored. */
  number: string;
  initials: string;
  prefix?: string;
  surname: string;
  mailingName: string;
  /** PartnerName / PartnerNamePrefix: the partner's surname the person uses. */
  partnerSurname?: string;
  partnerPrefix?: string;
  /** ProfessionalGroupCode, e.g. "01" physician, "30" nurse. */
  professionCode: string;
  /** TypeOfSpecialismId codes, e.g. "10" (cardiology). */
  specialisms?: string[];
  /** ISO date or date-time the registration ended (struck off). */
  registrationEnd?: string;
  /** ISO dates of a judgement provision (suspension); no end = indefinite. */
  suspendedFrom?: string;
  suspendedUntil?: string;
}

export type BigTestMode = "normal" | "fault" | "malformed" | "slow" | "http500" | "huge";

/** What the server last received, so tests can check the request MedMesh sent. */
export interface BigSeenRequest {
  method: string;
  soapAction: string;
  contentType: string;
  body: string;
  /** RegistrationNumber as read from a valid request, else undefined. */
  number: string | undefined;
}

export interface BigTestServer {
  url: string;
  /** Requests received so far (all modes). */
  readonly requests: number;
  readonly lastRequest: BigSeenRequest | undefined;
  setRecords(records: readonly BigTestRecord[]): void;
  setMode(mode: BigTestMode): void;
  stop(): Promise<void>;
}

const HUGE_MIB = 50;
/** When no delayMs is given, "slow" holds answers this long: past any timeout a test would set. */
const SLOW_DEFAULT_MS = 10_000;
const MAX_BODY = 64 * 1024;
const NO_DATE = "0001-01-01T00:00:00";

/** The service writes local date-times without a zone; a bare date becomes midnight. */
const serviceDate = (iso: string | undefined): string =>
  iso === undefined ? NO_DATE : /^\d{4}-\d{2}-\d{2}$/.test(iso) ? `${iso}T00:00:00` : iso;
/** xs:decimal, as .NET writes it: no leading zeros. */
const decimal = (digits: string): string => digits.replace(/^0+(?=\d)/, "");
const el = (name: string, value: string): string => `<${name}>${escapeXml(value)}</${name}>`;

const envelope = (body: string): string =>
  `<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="${SOAP_ENVELOPE_NAMESPACE}" ` +
  `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">` +
  `<soap:Body>${body}</soap:Body></soap:Envelope>`;

const faultEnvelope = (code: "Client" | "Server", message: string): string =>
  envelope(
    `<soap:Fault><faultcode>soap:${code}</faultcode>${el("faultstring", message)}<detail /></soap:Fault>`,
  );

/** One ListHcpApprox4 entry, elements in the WSDL's sequence order. */
function hcpXml(r: BigTestRecord, number: string): string {
  const n = decimal(number);
  const specialisms = (r.specialisms ?? [])
    .map(
      (code, i) =>
        `<SpecialismExtApp1>${el("SpecialismId", String(i + 1))}${el("ArticleRegistrationNumber", n)}` +
        `${el("TypeOfSpecialismId", code)}</SpecialismExtApp1>`,
    )
    .join("");
  const judgement = r.suspendedFrom
    ? `<JudgmentProvisionExtApp>${el("ArticleNumber", n)}${el("Id", "1")}` +
      el("StartDate", serviceDate(r.suspendedFrom)) +
      el("PublicDescription", "Schorsing van de inschrijving in het BIG-register") +
      (r.suspendedUntil ? el("EndDate", serviceDate(r.suspendedUntil)) : `<EndDate xsi:nil="true" />`) +
      `${el("Public", "true")}</JudgmentProvisionExtApp>`
    : "";
  return (
    `<ListHcpApprox4>${el("BirthSurname", r.surname)}${el("MailingName", r.mailingName)}` +
    (r.prefix ? el("Prefix", r.prefix) : "") +
    (r.partnerSurname ? el("PartnerName", r.partnerSurname) : "") +
    (r.partnerPrefix ? el("PartnerNamePrefix", r.partnerPrefix) : "") +
    `${el("Initial", r.initials)}${el("Gender", "O")}` +
    `<ArticleRegistration><ArticleRegistrationExtApp>${el("ArticleRegistrationNumber", n)}` +
    el("ArticleRegistrationStartDate", "2010-01-01T00:00:00") +
    el("ArticleRegistrationEndDate", serviceDate(r.registrationEnd)) +
    `${el("ProfessionalGroupCode", r.professionCode)}</ArticleRegistrationExtApp></ArticleRegistration>` +
    `<Specialism>${specialisms}</Specialism><Mention />` +
    `<JudgmentProvision>${judgement}</JudgmentProvision><Limitation /></ListHcpApprox4>`
  );
}

const only = (e: XmlElement | undefined, name: string): XmlElement | undefined =>
  e?.children.find((c) => c.name === name);

/** RegistrationNumber from a SOAP envelope carrying a listHcpApproxRequest; throws what the fault says. */
function readRequest(body: string): string {
  let doc: XmlElement;
  try {
    doc = parseXml(body);
  } catch {
    throw new Error("The request is not well-formed XML");
  }
  const request = only(only(doc.name === "Envelope" ? doc : undefined, "Body"), "listHcpApproxRequest");
  if (!request) throw new Error("The request is not a SOAP envelope with a listHcpApproxRequest");
  if (only(request, "WebSite")?.text.trim() !== "Ribiz") throw new Error("WebSite must be Ribiz");
  return (only(request, "RegistrationNumber")?.text ?? "").replace(/\s+/g, "");
}

/**
 * A local stand-in for CIBG's BIG-register service (ListHcpApprox4), for unit and end-to-end tests, the
 * local network and the re-verification benchmark. It checks a request the way the real (ASMX) service
 * does — POST, the SOAPAction header, a SOAP envelope with a listHcpApproxRequest — and answers a SOAP
 * fault (HTTP 500) otherwise; valid requests get the real envelope shape, with an empty ListHcpApprox for
 * an unknown number. Modes: "fault" (HTTP 500 + soap:Fault that echoes the number, as a careless service
 * might), "malformed" (cut-off XML), "http500" (an HTML error page), "huge" (a 50 MiB answer, streamed
 * without a length, as a runaway service sends it) and "slow". Answers wait delayMs
 * (default 0) — the benchmark's registry latency; "slow" waits delayMs, or 10 s when none was given.
 */
export async function startBigTestServer(
  records: readonly BigTestRecord[],
  opts: { delayMs?: number } = {},
): Promise<BigTestServer> {
  const keyed = (rs: readonly BigTestRecord[]) => new Map(rs.map((r) => [r.number.replace(/\s+/g, ""), r]));
  let byNumber = keyed(records);
  let mode: BigTestMode = "normal";
  let requests = 0;
  let lastRequest: BigSeenRequest | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const send = (res: ServerResponse, status: number, body: string, type = "text/xml; charset=utf-8") => {
    if (res.destroyed) return; // the client gave up (timeout)
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  const answer = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    const seen: BigSeenRequest = {
      method: req.method ?? "",
      // A repeated header arrives as an array; the service would not accept that either.
      soapAction: String(req.headers.soapaction ?? ""),
      contentType: req.headers["content-type"] ?? "",
      body,
      number: undefined,
    };
    lastRequest = seen;
    if (mode === "http500") {
      send(res, 500, "<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html");
      return;
    }
    if (req.method !== "POST") {
      send(res, 405, faultEnvelope("Client", "The request method must be POST"));
      return;
    }
    // SOAP 1.1 quotes the action; ASMX compares it without the quotes.
    if (seen.soapAction.replace(/^"|"$/g, "") !== BIG_SOAP_ACTION) {
      send(res, 500, faultEnvelope("Client", "Server did not recognize the SOAPAction header"));
      return;
    }
    let number: string;
    try {
      number = readRequest(body);
    } catch (err) {
      send(res, 500, faultEnvelope("Client", (err as Error).message));
      return;
    }
    seen.number = number;
    if (mode === "fault") {
      send(res, 500, faultEnvelope("Server", `Unable to process request for RegistrationNumber ${number}`));
      return;
    }
    if (mode === "huge") {
      if (res.destroyed) return;
      res.writeHead(200, { "content-type": "text/xml; charset=utf-8" });
      const filler = Buffer.alloc(1024 * 1024, "<x>padding</x>");
      let left = HUGE_MIB;
      const more = (): void => {
        while (left > 0 && !res.destroyed) {
          left--;
          if (!res.write(filler)) {
            res.once("drain", more);
            return;
          }
        }
        if (!res.destroyed) res.end();
      };
      res.write(`<?xml version="1.0" encoding="utf-8"?><soap:Envelope><soap:Body>`);
      more();
      return;
    }
    if (mode === "malformed") {
      // Cut off mid-answer, as a dropped proxy connection leaves it.
      send(
        res,
        200,
        `<?xml version="1.0" encoding="utf-8"?><soap:Envelope><soap:Body><ListHcpApprox4Result>`,
      );
      return;
    }
    const record = byNumber.get(number);
    send(
      res,
      200,
      envelope(
        `<ListHcpApprox4Result xmlns="${BIG_NAMESPACE}"><ListHcpApprox>` +
          `${record ? hcpXml(record, number) : ""}</ListHcpApprox></ListHcpApprox4Result>`,
      ),
    );
  };

  const server = createServer((req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    let size = 0;
    // A client that times out resets the connection; that is not the server's failure.
    req.on("error", () => undefined);
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on("end", () => {
      if (size > MAX_BODY) {
        send(res, 413, faultEnvelope("Client", "The request is too large"));
        return;
      }
      const body = Buffer.concat(chunks).toString("utf8");
      const delay = mode === "slow" ? (opts.delayMs ?? SLOW_DEFAULT_MS) : (opts.delayMs ?? 0);
      if (delay <= 0) {
        answer(req, res, body);
        return;
      }
      const t = setTimeout(() => {
        timers.delete(t);
        answer(req, res, body);
      }, delay);
      timers.add(t);
    });
  });
  // Many concurrent lookups (the benchmark): keep connections alive between them, queue bursts.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, () => {
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/zksrv/soap/4`,
    get requests() {
      return requests;
    },
    get lastRequest() {
      return lastRequest;
    },
    setRecords(r) {
      byNumber = keyed(r);
    },
    setMode(m) {
      mode = m;
    },
    async stop() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // Held ("slow") requests and kept-alive connections would otherwise keep close() waiting.
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
