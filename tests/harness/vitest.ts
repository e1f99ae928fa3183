import { afterAll, afterEach, beforeAll } from "vitest";
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
