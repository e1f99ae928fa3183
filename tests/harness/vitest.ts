import { afterAll, afterEach, beforeAll, describe, it } from "vitest";
import { startTestNetwork, type TestNetwork, type TestNetworkOptions } from "./test-network.ts";

/**
 * Vitest wiring: one network per test file (booting homeservers is the slow part), stopped after
 * the file; its data folder and homeserver logs are kept when any test in the file failed.
 */
export function useTestNetwork(opts: TestNetworkOptions): () => TestNetwork {
  let net: TestNetwork | undefined;
  let failed = false;
  beforeAll(async () => {
    net = await startTestNetwork(opts);
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail") failed = true;
  });
  afterAll(async () => {
    // If beforeAll failed, startNetwork already stopped what it had started and kept the folder.
    if (net) await net.stop(failed);
  });
  return () => {
    if (!net) throw new Error("test network is not running (beforeAll failed?)");
    return net;
  };
}

/**
 * The PostgreSQL server of a suite that needs one (MEDMESH_TEST_POSTGRES_URL, from
 * .ci/start-postgres.sh), or undefined: then the suite is reported skipped — and failed in CI,
 * where a missing server must not pass unnoticed.
 */
export function postgresForSuite(suite: string): string | undefined {
  const url = process.env.MEDMESH_TEST_POSTGRES_URL;
  if (url) return url;
  if (process.env.CI) {
    describe(suite, () => {
      it("needs MEDMESH_TEST_POSTGRES_URL in CI", () => {
        throw new Error(
          "MEDMESH_TEST_POSTGRES_URL is not set: run .ci/start-postgres.sh and export the URL it prints",
        );
      });
    });
  } else {
    describe.skip(`${suite} (set MEDMESH_TEST_POSTGRES_URL, e.g. from .ci/start-postgres.sh)`, () => {
      it("is skipped without a server", () => undefined);
    });
  }
  return undefined;
}
