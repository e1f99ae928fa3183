export * from "./ids.ts";
export { createLogger, type Logger } from "./logging.ts";
export { createMetricsRegistry } from "./metrics.ts";
export { ApiError, ErrCode, asyncHandler, errorMiddleware } from "./http/errors.ts";
export {
  createListenerApp,
  createServiceApp,
  jsonBody,
  listen,
  type HealthCheck,
  type RunningServer,
} from "./http/service.ts";
export {
  adminActorOf,
  adminAuthenticator,
  bearerToken,
  bearerTokenCheck,
  cachedTokenLookup,
  routeGuard,
  synapseTokenLookup,
  type Authenticate,
  type MatrixTokenInfo,
  type MatrixTokenLookup,
  type RouteGroup,
} from "./http/auth.ts";
export * from "./config/index.ts";
export { loadRegistration, RegistrationSchema, type Registration } from "./appservice/registration.ts";
export {
  homeserverTokenCheck,
  mountAppserviceApi,
  transactionKey,
  type AppserviceEvent,
  type EventHandler,
} from "./appservice/transactions.ts";
export { CAUGHT_UP, createCatchUp, isCaughtUp, type CatchUp } from "./appservice/catch-up.ts";
export { createDeadLetters, type DeadLetter, type DeadLetters } from "./appservice/dead-letters.ts";
export { isPermanent, Permanent } from "./appservice/failures.ts";
export {
  adminCheck,
  startAppserviceService,
  type ListenerDefinition,
  type MountContext,
  type RunningService,
  type ServiceDefinition,
  type StartedRole,
  type StartOptions,
} from "./service/appservice-service.ts";
export { runServiceMain } from "./service/main.ts";
export {
  createLeadership,
  electedLeader,
  LeaderConfigSchema,
  LeadershipLost,
  type Leader,
  type LeaderConfig,
  type Leadership,
} from "./service/leader.ts";
export {
  createLeaderCalls,
  leaderCallsRouteGroup,
  type LeaderCalls,
  type LeaderOperation,
} from "./service/leader-calls.ts";
export {
  ensureUser,
  loginWithPassword,
  MatrixRequestError,
  registerWithSharedSecret,
  type NewUser,
  type RegisteredUser,
  ensureAppserviceUser,
} from "./synapse/accounts.ts";
export { createSynapseAdmin, type SynapseAdmin } from "./synapse/admin-session.ts";
export { roomStateOf, type RoomStateEvent } from "./synapse/room-state.ts";
export {
  createStore,
  COMMON_MIGRATIONS,
  type CreateStoreOptions,
  type Migration,
  type DocumentStore,
  type LeaseStore,
  type Store,
  type TransactionStore,
  type NotificationStore,
} from "./store/index.ts";
export { asUser, type AsUser, type AsUserOptions } from "./synapse/as-user.ts";
export { freshSyncFilter, refreshTrackedDevices } from "./synapse/sync-filter.ts";
export {
  decryptAttachment,
  encryptAttachment,
  isEncryptedFile,
  type EncryptedFile,
} from "./crypto/attachment.ts";
/**
 * Marks a redaction the retention sweep made (in its content, beside the reason), so the bridge
 * tells other messengers it is the retention period, not a person, that deleted the message.
 */
export const RETENTION_REDACTION = "org.medmesh.retention";
export * from "./audit/index.ts";
export { canonicalJson } from "./crypto/canonical-json.ts";
