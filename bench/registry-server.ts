/**
 * The registry side of bench/reverify.ts, in its own process so that the measured memory is
 * MedMesh's alone: a RIZIV test server holding `count` practitioners, answering after `delay` ms.
 * Prints its URL on the first line of stdout.
 */
import { startRizivTestServer } from "../policy-module/src/identity/registries/riziv/test-server.ts";
import { rizivCheckDigits } from "../policy-module/src/identity/registries/riziv/client.ts";

export const numberOf = (i: number): string => {
  const base = String(100_000 + i);
  return `${base}${rizivCheckDigits(base).mod97}000`;
};
/** Every 1000th practitioner is struck off since the last run. */
export const isStruckOff = (i: number): boolean => i % 1000 === 999;

if (process.argv[1] === import.meta.filename) {
  const count = Number(process.argv[2]);
  const server = await startRizivTestServer(
    Array.from({ length: count }, (_, i) => ({
      number: numberOf(i),
      firstName: "Test",
      lastName: `Clinician${String(i)}`,
      profession: "physician",
      qualification: "000",
      specialisms: [],
      status: isStruckOff(i) ? ("struck_off" as const) : ("active" as const),
    })),
    { delayMs: Number(process.argv[3]) },
  );
  server.setMode("slow"); // every answer after the delay
  process.stdout.write(`${server.url}\n`);
  process.on("SIGTERM", () => {
    void server.stop().then(() => process.exit(0));
  });
}
