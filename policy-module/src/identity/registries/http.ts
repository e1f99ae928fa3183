import { z } from "zod";
import { RegistryUnavailableError } from "./types.ts";

/** What a registry's answer to one look-up may weigh at most, unless configured (a few KiB is normal). */
export const DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * The answer's body as text, read only up to `maxBytes`: a registry that sends more (a broken
 * service, a proxy's error page, an attack) is a malformed answer, and the rest is not read — a
 * 50 MiB answer costs this process `maxBytes`, not 50 MiB.
 */
export async function readCappedText(res: Response, maxBytes: number, registry: string): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge(registry, maxBytes);
  }
  if (!res.body) return "";
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(registry, maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const tooLarge = (registry: string, maxBytes: number) =>
  new RegistryUnavailableError(
    "malformed",
    `${registry} answered with more than ${String(maxBytes)} bytes (max_answer_bytes); the check stays pending`,
  );

/** The config of a registry asked over the network, one look-up per check (BIG, RIZIV). */
export function registryEndpointSchema(defaultRatePerSecond: number) {
  return z.object({
    url: z.url({ protocol: /^https?$/ }).describe("The registry's web service."),
    timeout_ms: z.number().int().positive().default(5000).describe("How long one look-up may take."),
    max_answer_bytes: z
      .number()
      .int()
      .positive()
      .default(DEFAULT_MAX_ANSWER_BYTES)
      .describe("Largest answer read from the registry; a larger one leaves the check pending."),
    rate_per_second: z
      .number()
      .positive()
      .default(defaultRatePerSecond)
      .describe("Look-ups per second at most, from this process, whoever asks (docs/identity.md)."),
  });
}
