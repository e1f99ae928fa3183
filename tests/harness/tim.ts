import type { RunningOrganisation } from "@medmesh/deploy";
import type { RunningTimDriver } from "@medmesh/tim-driver";
import { freePorts } from "./ports.ts";
import type { TestNetwork, TestNetworkOptions } from "./test-network.ts";

export interface TimDriverHandle {
  org: RunningOrganisation;
  driver: RunningTimDriver;
  /** A JSON request to the driver; the response is returned as is. */
  call(method: string, path: string, body?: unknown): Promise<Response>;
}

/**
 * `organisationSettingsFor` of a test network whose organisations each run a TI-M test driver
 * (started by the runner, as `npm start -- --tim` does), with the given profiles.
 */
export function timOrganisations(
  profiles: readonly ("tim-pro" | "tim-epa")[],
): NonNullable<TestNetworkOptions["organisationSettingsFor"]> {
  return async () => {
    const ports = await freePorts(profiles.length);
    return Object.fromEntries(profiles.map((profile, i) => [i, { profile, tim_driver: { port: ports[i] } }]));
  };
}

/** The runner's TI-M test driver of every organisation. */
export function timDrivers(net: TestNetwork): TimDriverHandle[] {
  return net.orgs.map((org) => {
    const driver = org.timDriver;
    if (!driver) throw new Error(`${org.org.id} runs no TI-M test driver (use timOrganisations)`);
    const call = (method: string, path: string, body?: unknown): Promise<Response> =>
      fetch(new URL(path, driver.url), {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    return { org, driver, call };
  });
}
