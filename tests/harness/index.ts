export {
  startTestNetwork,
  TEST_RUNS_DIR,
  type TestNetwork,
  type TestUser,
  type TestNetworkOptions,
} from "./test-network.ts";
export { postgresForSuite, useTestNetwork } from "./vitest.ts";
export { roomBodies, startClient, type ClientUser } from "./clients.ts";
export { nextRoom, waitForRoomEvent, waitForMembership, waitUntil, type WaitOptions } from "./wait.ts";
export { freePorts, freeOrganisationPorts, type OrganisationPorts } from "./ports.ts";
export { namedUsers, sharedRoom, type SharedRoom } from "./scenarios.ts";
export { OpenApiContract } from "./openapi.ts";
export { adminApi, type AdminApi, type ServiceName } from "./admin.ts";
export { Browser } from "./browser.ts";
export { openSynapseDb, withSynapseDb, type SynapseDb } from "./synapse-db.ts";
export { startTestIdp, type IdpAccount, type TestIdp } from "./test-idp.ts";
export { startChromium, CHROMIUM, type HeadlessChromium } from "./chromium.ts";
export { WORKER_TOPOLOGY } from "./topologies.ts";
export { timDrivers, timOrganisations, type TimDriverHandle } from "./tim.ts";
