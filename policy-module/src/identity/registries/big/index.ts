import { registryEndpointSchema } from "../http.ts";
import { registryPlugin } from "../plugin.ts";
import { createBigRegistry, normaliseBigNumber } from "./client.ts";

/**
 * CIBG publishes no rate limit for its public service; MedMesh asks it at most 10 times a second
 * (a re-verification run of 5,000 clinicians takes about 8 minutes).
 */
export const BIG_RATE_PER_SECOND = 10;

const schema = registryEndpointSchema(BIG_RATE_PER_SECOND)
  .describe("Dutch BIG-register (CIBG SOAP service ListHcpApprox4, WSDL OpenbaarV4).")
  .meta({ examples: [{ url: "https://api.bigregister.nl/zksrv/soap/4", timeout_ms: 5000 }] });

export const bigPlugin = registryPlugin({
  id: "big",
  configSchema: schema,
  validateNumber: normaliseBigNumber,
  defaultRatePerSecond: BIG_RATE_PER_SECOND,
  ratePerSecond: (c) => c.rate_per_second,
  registryNames: () => ["BIG"],
  fileFields: [],
  create: (c) =>
    createBigRegistry({ url: c.url, timeoutMs: c.timeout_ms, maxAnswerBytes: c.max_answer_bytes }),
});

export * from "./client.ts";
