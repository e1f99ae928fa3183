import { randomBytes } from "node:crypto";
import { startTimDriver, type RunningTimDriver } from "@medmesh/tim-driver";
import type { RunningOrganisation } from "@medmesh/deploy";
import type { TestNetwork } from "./test-network.ts";

export interface TimDriverHandle {
  org: RunningOrganisation;
  driver: RunningTimDriver;
  /** A JSON request to the driver; the response is returned as is. */
  call(method: string, path: string, body?: unknown): Promise<Response>;
}

/** One TI-M test driver per organisation, each with a pool of `devices` fresh accounts. */
export async function startTimDrivers(net: TestNetwork, devices = 3): Promise<TimDriverHandle[]> {
  return Promise.all(
    net.orgs.map(async (org) => {
      const accounts = [];
      for (let i = 1; i <= devices; i++) {
        const u = await net.registerUser(org, `tim-${String(i)}-${randomBytes(3).toString("hex")}`);
        accounts.push({
          username: u.localpart,
          password: u.password,
          display_name: `TIM device ${String(i)}`,
        });
      }
      const driver = await startTimDriver({
        listen: { host: "127.0.0.1", port: 0 },
        homeserver: { client_url: org.clientUrl, server_name: org.serverName },
        accounts,
        log_level: "warn",
      });
      const call = (method: string, path: string, body?: unknown): Promise<Response> =>
        fetch(new URL(path, driver.url), {
          method,
          headers: body === undefined ? {} : { "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      return { org, driver, call };
    }),
  );
}
