import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** One practitioner of a test feed, as an mCSD export lists it. */
export interface McsdTestPractitioner {
  id: string;
  number: string;
  family: string;
  given?: string[];
  /** The birth name, where the person uses another (use: maiden). */
  maiden?: string;
  active?: boolean;
  qualification?: { code: string; display: string; end?: string };
  specialty?: string;
}

export const BIG_SYSTEM = "http://fhir.nl/fhir/NamingSystem/big";

/** A FHIR R4 Bundle (type collection) of Practitioner and PractitionerRole resources. */
export function mcsdBundle(practitioners: readonly McsdTestPractitioner[], system = BIG_SYSTEM): unknown {
  return {
    resourceType: "Bundle",
    type: "collection",
    entry: practitioners.flatMap((p) => [
      {
        fullUrl: `https://directory.example/fhir/Practitioner/${p.id}`,
        resource: {
          resourceType: "Practitioner",
          id: p.id,
          identifier: [{ system, value: p.number }],
          ...(p.active === undefined ? {} : { active: p.active }),
          name: [
            { use: "official", family: p.family, given: p.given ?? [] },
            ...(p.maiden ? [{ use: "maiden", family: p.maiden, given: p.given ?? [] }] : []),
          ],
          ...(p.qualification
            ? {
                qualification: [
                  {
                    identifier: [{ system, value: p.number }],
                    code: {
                      coding: [
                        {
                          system: "urn:oid:2.16.840.1.113883.2.4.15.111",
                          code: p.qualification.code,
                          display: p.qualification.display,
                        },
                      ],
                    },
                    ...(p.qualification.end ? { period: { end: p.qualification.end } } : {}),
                  },
                ],
              }
            : {}),
        },
      },
      ...(p.specialty
        ? [
            {
              resource: {
                resourceType: "PractitionerRole",
                practitioner: { reference: `Practitioner/${p.id}` },
                specialty: [{ text: p.specialty }],
              },
            },
          ]
        : []),
    ]),
  };
}

export type McsdTestMode = "normal" | "malformed" | "not-a-bundle" | "huge" | "http500" | "slow";

export interface McsdTestServer {
  url: string;
  readonly requests: number;
  setPractitioners(p: readonly McsdTestPractitioner[]): void;
  setMode(mode: McsdTestMode): void;
  stop(): Promise<void>;
}

const HUGE_MIB = 50;

/** Serves a feed at {url}; "huge" streams 50 MiB without a length, "slow" never answers in time. */
export async function startMcsdTestServer(initial: readonly McsdTestPractitioner[]): Promise<McsdTestServer> {
  let practitioners = initial;
  let mode: McsdTestMode = "normal";
  let requests = 0;
  const server = createServer((_req, res) => {
    requests++;
    switch (mode) {
      case "normal":
        res.writeHead(200, { "content-type": "application/fhir+json" });
        res.end(JSON.stringify(mcsdBundle(practitioners)));
        return;
      case "malformed":
        res.writeHead(200, { "content-type": "application/fhir+json" });
        res.end('{"resourceType": "Bundle", "entry": [');
        return;
      case "not-a-bundle":
        res.writeHead(200, { "content-type": "application/fhir+json" });
        res.end(JSON.stringify({ resourceType: "OperationOutcome", issue: [] }));
        return;
      case "http500":
        res.writeHead(500, { "content-type": "text/html" });
        res.end("<html>error</html>");
        return;
      case "slow":
        setTimeout(() => res.end(), 10_000).unref();
        return;
      case "huge": {
        res.writeHead(200, { "content-type": "application/fhir+json" });
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        let sent = 0;
        const more = (): void => {
          while (sent < HUGE_MIB) {
            sent++;
            if (!res.write(chunk)) {
              res.once("drain", more);
              return;
            }
          }
          res.end();
        };
        res.on("error", () => undefined);
        more();
        return;
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${String(port)}/fhir/Practitioner`,
    get requests() {
      return requests;
    },
    setPractitioners: (p) => {
      practitioners = p;
    },
    setMode: (m) => {
      mode = m;
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
