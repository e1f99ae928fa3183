export {
  DeploymentSchema,
  OrganisationSchema,
  serverNameOf,
  type DeploymentConfig,
  type OrganisationConfig,
} from "./config/schema.ts";
export { WorkersSchema, workerList, type WorkersConfig } from "./config/workers-schema.ts";
export {
  generateNetwork,
  organisationPaths,
  type GeneratedNetwork,
  type GeneratedOrganisation,
} from "./generate.ts";
export {
  startNetwork,
  installSynapse,
  describeNetwork,
  REPO_ROOT,
  type RunningNetwork,
  type RunningOrganisation,
} from "./network.ts";
export {
  registerWithSharedSecret,
  loginWithPassword,
  ensureUser,
  MatrixRequestError,
  type RegisteredUser,
} from "@medmesh/common";
export { CONFIG_KINDS, driftedSamples, renderKind } from "./samples.ts";
