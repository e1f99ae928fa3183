import { registryEndpointSchema } from "../http.ts";
import { registryPlugin } from "../plugin.ts";
import { createRizivRegistry, parseRizivNumber } from "./client.ts";

/**
 * The endpoint is the organisation's own service behind MedMesh's contract (RIZIV's web services
 * are not public), so the limit is the organisation's to set; 50 a second unless configured.
 */
export const RIZIV_RATE_PER_SECOND = 50;

const schema = registryEndpointSchema(RIZIV_RATE_PER_SECOND).describe(
  "Belgian RIZIV/INAMI registry endpoint (MedMesh's JSON adapter contract).",
);

export const rizivPlugin = registryPlugin({
  id: "riziv",
  configSchema: schema,
  validateNumber: (n) => {
    const p = parseRizivNumber(n);
    return p.ok ? { ok: true, normalised: p.normalised } : p;
  },
  defaultRatePerSecond: RIZIV_RATE_PER_SECOND,
  ratePerSecond: (c) => c.rate_per_second,
  registryNames: () => ["RIZIV"],
  fileFields: [],
  create: (c) =>
    createRizivRegistry({ url: c.url, timeoutMs: c.timeout_ms, maxAnswerBytes: c.max_answer_bytes }),
});

export * from "./client.ts";
