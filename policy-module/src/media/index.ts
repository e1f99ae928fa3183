export { stripImageMetadata, type StripResult } from "./strip-metadata.ts";
