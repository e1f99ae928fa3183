export { stripImageMetadata, walkerFor, type StripResult } from "./strip-metadata.ts";
export { stripImageFile, type FileStripResult } from "./strip-file.ts";
