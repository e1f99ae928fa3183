export {
  createDirectory,
  DirectoryConfigSchema,
  FHIR_PATH,
  type Directory,
  type DirectoryConfig,
} from "./directory.ts";
export { createPeerClient, PeerError, type PeerClient } from "./peer-client.ts";
export { createSearchIndex } from "./search-index.ts";
