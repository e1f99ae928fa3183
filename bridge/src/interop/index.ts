export { InteropConfigSchema, InteropVendorSchema, type InteropConfig } from "./config.ts";
export { mountInteropApi, EVENTS_PATH, MEDIA_PATH, REQUIRED_COMPONENTS } from "./server.ts";
export {
  contentDigest,
  signRequest,
  verifyRequest,
  signatureBase,
  type SignableRequest,
} from "./signatures.ts";
export { InteropEvent, WebhookEvent } from "./types.ts";
