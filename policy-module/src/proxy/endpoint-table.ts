/**
 * Every endpoint the proxy lets through, and every one it refuses on purpose. Anything not listed
 * here is answered 404 M_UNRECOGNIZED without reaching Synapse (endpoints.ts). The list follows
 * what Synapse 1.163.2 routes with MedMesh's homeserver config; endpoints.test.ts checks it
 * against Synapse's own servlets (synapse-routes.py), so a Synapse upgrade that adds a route
 * fails the test until the route is classified here.
 *
 * Path templates: `{name}` is one path segment, `{name?}` one that may be empty (the empty state
 * key: ".../state/m.room.name/"), `{name...}` any rest of the path (also empty),
 * `(a|b)` a choice, `[…]` an optional part; everything else is literal.
 */

export const FAMILIES = ["client", "media", "federation", "key", "synapse", "medmesh"] as const;
export type Family = (typeof FAMILIES)[number];
export type Listener = "client" | "federation";

/**
 * The rule that looks at a request before it is forwarded (policy-module/src/proxy/*-rules.ts);
 * `none`: only the listener's own checks (client: token and rate limit; federation: X-Matrix
 * signature, addressed to us, origin on the trust list).
 */
export const RULES = {
  none: "no endpoint rule; the listener's checks only",
  "create-room": "invitees checked; m.room.encryption added; MedMesh bot made admin",
  invite: "invitee on a trusted server; invitee's invite permissions",
  join: "room and via servers on the trust list",
  "permission-config": "TI-Messenger permission config validated; invite cache dropped",
  "directory-search": "verified clinicians are answered from the verified directory",
  profile: "verified clinicians are answered from the verified directory",
  "media-strip": "EXIF/XMP/IPTC removed from JPEG, PNG and WebP uploads",
  "federation-invite": "inviter belongs to the origin; invitee's invite permissions",
  "unsigned-federation": "served without request signatures (keys, version)",
  "medmesh-api": "MedMesh's own API, answered by the proxy, never forwarded",
  "tim-support":
    "TI-M: the organisation's support contact (/.well-known/matrix/support), answered by the proxy",
  "tim-public-rooms": "TI-M: insured persons (tim-epa) do not list public rooms",
} as const;
export type RuleId = keyof typeof RULES;

/** Where the endpoint is answered: one of Synapse's servlets, another Synapse resource, or MedMesh. */
export type Served = "servlet" | "resource" | "proxy";

export type Guard = { rule: RuleId } | { deny: string; status?: number; errcode?: string };

export interface EndpointEntry {
  family: Family;
  methods: readonly string[];
  path: string;
  guard: Guard;
  served: Served;
  /** Defaults: client, media, synapse → client listener; federation, key → federation listener. */
  listener?: Listener;
  /**
   * Only where the organisation has single sign-on configured (true) or has not (false): Synapse
   * serves the SSO endpoints only then, and the edge opens them exactly then (`proxy.single_sign_on`).
   */
  sso?: boolean;
  /**
   * Only where the organisation has a TI-Messenger profile (true) or MedMesh's own (false):
   * the request-level differences of docs/tim-profile.md.
   */
  tim?: boolean;
}

type Methods = string | readonly string[];
const ALL = ["GET", "PUT", "POST", "DELETE"] as const;
const list = (m: Methods): readonly string[] => (typeof m === "string" ? [m] : m);

const allow = (methods: Methods, path: string, rule: RuleId = "none") => ({
  methods: list(methods),
  path,
  guard: { rule },
});
const deny = (methods: Methods, path: string, reason: string, status?: number, errcode?: string) => ({
  methods: list(methods),
  path,
  guard: { deny: reason, ...(status === undefined ? {} : { status }), ...(errcode ? { errcode } : {}) },
});

// The client API versions Synapse serves most endpoints under.
const C = "/_matrix/client/(r0|v3|unstable)";
const THREEPID = "E-mail and phone number identifiers (3PIDs) are not used on this server";
const TXN_VARIANT =
  "Synapse's non-standard transaction-ID variant; clients use POST, where the trust and invite checks apply";

const clientEndpoints = [
  allow("GET", "/_matrix/client/versions"),
  deny(ALL, "/_matrix/client/api/v1/{rest...}", "The pre-r0 client API is not served; use v3"),
  deny(ALL, "/_matrix/client/(r0|v3|unstable)/admin/{rest...}", "The admin API is not available here"),
  // Sessions and accounts
  allow(["GET", "POST"], `${C}/login`),
  // Single sign-on with the organisation's identity provider (OIDC): the browser's first step.
  { ...allow("GET", `${C}/login/sso/redirect`), sso: true },
  { ...allow("GET", "/_matrix/client/(r0|v3)/login/sso/redirect/{idpId}"), sso: true },
  { ...deny("GET", `${C}/login/cas/redirect`, "CAS is not used; sign in with single sign-on"), sso: true },
  {
    ...deny(
      "GET",
      `${C}/login/(cas|sso)/redirect[/{idpId}]`,
      "Single sign-on is not configured for this organisation",
    ),
    sso: false,
  },
  allow("POST", `${C}/refresh`),
  allow("POST", `${C}/logout[/all]`),
  allow("POST", `${C}/register`),
  allow("GET", `${C}/register/available`),
  allow("GET", "/_matrix/client/(v1|unstable)/register/m.login.registration_token/validity"),
  allow(["GET", "POST"], `${C}/auth/{stage}/fallback/web`),
  allow("GET", `${C}/account/whoami`),
  allow("POST", `${C}/account/(deactivate|password)`),
  allow("GET", `${C}/password_policy`),
  allow("GET", `${C}/capabilities`),
  allow("POST", "/_matrix/client/(v1|unstable)/appservice/{appserviceId}/ping"),
  // Listing is harmless (always empty here) and Element's settings page asks for it.
  allow("GET", `${C}/account/3pid`),
  deny("POST", `${C}/account/3pid[/(add|bind|unbind|delete)]`, THREEPID),
  deny("POST", `${C}/(account/3pid|account/password|register)/(email|msisdn)/requestToken`, THREEPID),
  deny(["GET", "POST"], "/_matrix/client/unstable/add_threepid/(email|msisdn)/submit_token", THREEPID),
  deny("GET", "/_matrix/client/unstable/registration/{medium}/submit_token", THREEPID),
  deny(["GET", "POST"], `${C}/account_validity/(renew|send_mail)`, "Account validity is not configured"),
  deny("POST", `${C}/tokenrefresh`, "Deprecated; use /refresh"),
  // Clients probe for OIDC-native login (MSC2965); Synapse serves it only with MAS.
  deny(
    "GET",
    "/_matrix/client/(v1|unstable/org.matrix.msc2965)/(auth_metadata|auth_issuer)",
    "OIDC-native login is not configured",
  ),
  // matrix-js-sdk probes these at start or in calls; Synapse serves them only with experimental
  // features MedMesh leaves off, and answers the same 404.
  deny(
    "GET",
    "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports",
    "MatrixRTC (MSC4143) is not configured",
  ),
  deny(
    "POST",
    "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/(get_token|delegate_delayed_leave)",
    "MatrixRTC (MSC4195) is not configured",
  ),
  deny(
    "GET",
    "/_matrix/client/unstable/org.matrix.msc1763/retention/configuration",
    "Retention is MedMesh's own (30 days unless kept), not Synapse's MSC1763 policies",
  ),
  // Sync, filters, events
  allow("GET", `${C}/sync`),
  allow("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"),
  allow("GET", `${C}/user/{userId}/filter/{filterId}`),
  allow("POST", `${C}/user/{userId}/filter`),
  allow("GET", `${C}/(initialSync|events|joined_rooms|notifications)`),
  allow("GET", `${C}/events/{eventId}`),
  // Rooms
  allow("POST", `${C}/createRoom`, "create-room"),
  deny("PUT", `${C}/createRoom/{txnId}`, TXN_VARIANT),
  allow("POST", `${C}/rooms/{roomId}/invite`, "invite"),
  allow("POST", `${C}/rooms/{roomId}/join`, "join"),
  allow("POST", `${C}/(join|knock)/{roomIdOrAlias}`, "join"),
  allow("POST", `${C}/rooms/{roomId}/(leave|ban|unban|kick|forget|read_markers|upgrade)`),
  deny("PUT", `${C}/rooms/{roomId}/(join|invite|leave|ban|unban|kick)/{txnId}`, TXN_VARIANT),
  deny("PUT", `${C}/join/{roomIdOrAlias}/{txnId}`, TXN_VARIANT),
  allow("PUT", `${C}/rooms/{roomId}/forget/{txnId}`),
  allow("GET", `${C}/rooms/{roomId}/(initialSync|members|joined_members|messages|state)`),
  allow(["GET", "PUT"], `${C}/rooms/{roomId}/state/{eventType}[/{stateKey?}]`),
  allow("POST", `${C}/rooms/{roomId}/(send|redact)/{eventTypeOrId}`),
  allow("PUT", `${C}/rooms/{roomId}/(send|redact)/{eventTypeOrId}/{txnId}`),
  allow("PUT", `${C}/rooms/{roomId}/typing/{userId}`),
  allow("GET", `${C}/rooms/{roomId}/(context|event)/{eventId}`),
  allow("POST", `${C}/rooms/{roomId}/receipt/{receiptType}/{eventId}`),
  allow("POST", `${C}/rooms/{roomId}/report/{eventId}`),
  allow("POST", "/_matrix/client/v3/(rooms|users)/{id}/report"),
  allow("GET", "/_matrix/client/(r0|v3|unstable/org.matrix.msc2432)/rooms/{roomId}/aliases"),
  allow("GET", "/_matrix/client/v1/rooms/{roomId}/(hierarchy|timestamp_to_event|threads)"),
  allow("GET", "/_matrix/client/(v1|unstable)/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"),
  allow("GET", "/_matrix/client/v1/room_summary/{roomIdOrAlias}"),
  allow(
    "GET",
    "/_matrix/client/unstable/im.nheko.summary/(rooms/{roomIdOrAlias}/summary|summary/{roomIdOrAlias})",
  ),
  allow("POST", `${C}/search`),
  allow(["GET", "POST"], `${C}/publicRooms`, "tim-public-rooms"),
  allow(["GET", "PUT", "DELETE"], `${C}/directory/room/{roomAlias}`),
  allow(["GET", "PUT"], `${C}/directory/list/room/{roomId}`),
  allow(["PUT", "DELETE"], `${C}/directory/list/appservice/{networkId}/{roomId}`),
  // Delayed events (MSC4140): Element Call.
  allow("GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events[/{delayId}]"),
  allow(
    "POST",
    "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}[/(cancel|send|restart)]",
  ),
  // Users and profiles
  deny(
    ["PUT", "DELETE"],
    `${C}/profile/{userId}/org.medmesh.{field}`,
    "Profile fields under org.medmesh. are set by your organisation's MedMesh",
    403,
    "M_FORBIDDEN",
  ),
  allow("GET", `${C}/profile/{userId}[/(displayname|avatar_url)]`, "profile"),
  allow(["PUT", "DELETE"], `${C}/profile/{userId}/(displayname|avatar_url)`),
  allow(["GET", "PUT", "DELETE"], "/_matrix/client/v3/profile/{userId}/{field}"),
  allow("POST", `${C}/user_directory/search`, "directory-search"),
  allow("GET", "/_matrix/client/(v1|unstable)/mutual_rooms"),
  allow(["GET", "PUT"], `${C}/presence/{userId}/status`),
  allow("POST", `${C}/user/{userId}/openid/request_token`),
  // Account data and tags
  allow("GET", `${C}/user/{userId}/account_data/{type}`),
  allow("PUT", `${C}/user/{userId}/account_data/{type}`, "permission-config"),
  allow(["GET", "PUT"], `${C}/user/{userId}/rooms/{roomId}/account_data/{type}`),
  allow("GET", `${C}/user/{userId}/rooms/{roomId}/tags`),
  allow(["PUT", "DELETE"], `${C}/user/{userId}/rooms/{roomId}/tags/{tag}`),
  // End-to-end encryption and devices
  allow("POST", `${C}/keys/(upload|query|claim|signatures/upload)`),
  allow("POST", "/_matrix/client/(v3|unstable)/keys/device_signing/upload"),
  // Dehydrated devices (MSC3814): the account's offline device, kept by Synapse for its next device.
  allow(["GET", "PUT", "DELETE"], "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"),
  allow(
    ["GET", "POST"],
    "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events",
  ),
  allow("GET", `${C}/keys/changes`),
  allow(["GET", "PUT", "DELETE"], `${C}/room_keys/keys[/{roomId}[/{sessionId}]]`),
  allow(["GET", "POST"], `${C}/room_keys/version`),
  allow(["GET", "PUT", "DELETE"], `${C}/room_keys/version/{version}`),
  allow("PUT", `${C}/sendToDevice/{eventType}/{txnId}`),
  allow("GET", `${C}/devices`),
  allow(["GET", "PUT", "DELETE"], `${C}/devices/{deviceId}`),
  allow("POST", `${C}/delete_devices`),
  // Push, VoIP, third-party networks (bridges)
  allow("GET", `${C}/pushers`),
  allow("POST", `${C}/pushers/set`),
  deny("GET", "/_matrix/client/unstable/pushers/remove", "E-mail push is not configured"),
  allow(["GET", "PUT", "DELETE"], `${C}/pushrules/{path...}`),
  allow("GET", `${C}/voip/turnServer`),
  allow("GET", `${C}/thirdparty/(protocols|protocol/{protocol})`),
  allow("GET", `${C}/thirdparty/(user|location)[/{protocol}]`),
].map((e) => ({ ...e, family: "client" as const, served: "servlet" as const }));

const clientResources = [
  { ...allow("GET", "/.well-known/matrix/client"), family: "client" as const },
  {
    ...allow("GET", "/.well-known/matrix/support", "tim-support"),
    family: "client" as const,
    served: "proxy" as const,
    tim: true,
  },
  {
    ...deny(["PUT", "POST", "DELETE"], "/.well-known/matrix/support", "The support file is read-only", 405),
    family: "client" as const,
    served: "proxy" as const,
    tim: true,
  },
  {
    ...deny(ALL, "/_synapse/admin/{rest...}", "The admin API is not available here"),
    family: "synapse" as const,
  },
  {
    ...deny(ALL, "/_synapse/client/{rest...}", "Single sign-on, consent and e-mail pages are not used here"),
    family: "synapse" as const,
    sso: false,
  },
  // With single sign-on: the pages of Synapse's OIDC flow (docs/identity.md). Anything else under
  // /_synapse/client stays unknown (404), so no catch-all deny that would shadow these.
  ...[
    // The identity provider sends the browser back here (form_post answers with a POST).
    allow(["GET", "POST"], "/_synapse/client/oidc/callback"),
    allow("GET", "/_synapse/client/pick_idp"),
    // When the identity provider gives no usable username, Synapse lets the person pick one.
    allow("GET", "/_synapse/client/pick_username/(account_details|check)"),
    allow("POST", "/_synapse/client/pick_username/account_details"),
    allow("GET", "/_synapse/client/sso_register"),
    deny(
      ALL,
      "/_synapse/client/(new_user_consent|unsubscribe|password_reset/{rest...}|rendezvous[/{rest...}])",
      "Consent and e-mail pages are not used here",
    ),
  ].map((e) => ({ ...e, family: "synapse" as const, sso: true })),
  {
    ...deny("GET", "/_matrix/static/{rest...}", "Synapse's static pages are not served"),
    family: "synapse" as const,
  },
].map((e) => ({ served: "resource" as const, ...e }));

const UNAUTHENTICATED_MEDIA = "Unauthenticated media is turned off; use /_matrix/client/v1/media";
const PREVIEWS = "Link previews are turned off: they would send links out of the network";

const mediaEndpoints = [
  allow("POST", "/_matrix/media/(r0|v3|v1)/upload", "media-strip"),
  allow("PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}", "media-strip"),
  allow("POST", "/_matrix/media/v1/create"),
  allow("GET", "/_matrix/media/(r0|v3|v1)/config"),
  {
    ...deny(
      "GET",
      "/_matrix/media/(r0|v3|v1)/(download|thumbnail)/{rest...}",
      UNAUTHENTICATED_MEDIA,
      404,
      "M_NOT_FOUND",
    ),
    tim: false,
  },
  // TI-M follows Matrix v1.11, which still serves the legacy download without a token.
  { ...allow("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]"), tim: true },
  {
    ...deny(
      "GET",
      "/_matrix/media/(r0|v1)/(download|thumbnail)/{rest...}",
      UNAUTHENTICATED_MEDIA,
      404,
      "M_NOT_FOUND",
    ),
    tim: true,
  },
  {
    ...deny("GET", "/_matrix/media/v3/thumbnail/{rest...}", UNAUTHENTICATED_MEDIA, 404, "M_NOT_FOUND"),
    tim: true,
  },
  { ...deny("GET", "/_matrix/media/(r0|v3|v1)/preview_url", PREVIEWS, 403, "M_FORBIDDEN"), tim: false },
  // TI-M: link previews are not served at all (404).
  { ...deny("GET", "/_matrix/media/(r0|v3|v1)/preview_url", PREVIEWS, 404, "M_NOT_FOUND"), tim: true },
  allow("GET", "/_matrix/client/v1/media/config"),
  allow("GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"),
  allow("GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"),
  { ...deny("GET", "/_matrix/client/v1/media/preview_url", PREVIEWS, 403, "M_FORBIDDEN"), tim: false },
  { ...deny("GET", "/_matrix/client/v1/media/preview_url", PREVIEWS, 404, "M_NOT_FOUND"), tim: true },
].map((e) => ({ ...e, family: "media" as const, served: "servlet" as const }));

const F = "/_matrix/federation/v1";
const federationEndpoints = [
  allow("GET", `${F}/version`, "unsigned-federation"),
  allow("PUT", `${F}/send/{txnId}[/]`),
  allow("GET", `${F}/(event|state|state_ids|backfill|timestamp_to_event)/{id}[/]`),
  allow("GET", `${F}/(event_auth|make_join|make_leave|make_knock)/{roomId}/{id}`),
  allow("PUT", "/_matrix/federation/(v1|v2)/(send_join|send_leave)/{roomId}/{eventId}"),
  allow("PUT", `${F}/send_knock/{roomId}/{eventId}`),
  allow("PUT", "/_matrix/federation/(v1|v2)/invite/{roomId}/{eventId}", "federation-invite"),
  allow("POST", `${F}/get_missing_events/{roomId}`),
  allow("GET", `${F}/query/{queryType}`),
  allow("POST", `${F}/user/keys/(query|claim)`),
  allow("GET", `${F}/user/devices/{userId}`),
  allow("GET", `${F}/hierarchy/{roomId}`),
  allow("GET", "/_matrix/federation/unstable/rooms/{roomId}/complexity"),
  allow(["GET", "POST"], `${F}/publicRooms`),
  allow("GET", `${F}/media/(download|thumbnail)/{mediaId}`),
  deny("PUT", `${F}/exchange_third_party_invite/{roomId}`, THREEPID),
  deny("POST", `${F}/3pid/onbind`, THREEPID),
  deny("GET", `${F}/openid/userinfo`, "OpenID user info is for integration managers and widgets, not peers"),
].map((e) => ({ ...e, family: "federation" as const, served: "servlet" as const }));

const otherEndpoints = [
  {
    ...deny(ALL, "/_matrix/media/{rest...}", "Peers fetch media from /_matrix/federation/v1/media"),
    family: "media" as const,
    listener: "federation" as const,
  },
  { ...allow("GET", "/_matrix/key/v2/server[/{keyId}]", "unsigned-federation"), family: "key" as const },
  {
    ...allow("GET", "/_matrix/key/v2/query/{serverName}[/{keyId}]", "unsigned-federation"),
    family: "key" as const,
  },
  { ...allow("POST", "/_matrix/key/v2/query", "unsigned-federation"), family: "key" as const },
].map((e) => ({ ...e, served: "servlet" as const }));

const medmesh = (listener: Listener, methods: Methods, path: string) => ({
  ...allow(methods, path, "medmesh-api"),
  family: "medmesh" as const,
  served: "proxy" as const,
  listener,
});

// MedMesh's own routes: identity/service.ts, groups/routes.ts and console/ (client), start.ts, identity and groups (peers).
const medmeshEndpoints = [
  medmesh("client", ["GET", "POST"], "/_medmesh/identity/v1/verification"),
  medmesh("client", "PUT", "/_medmesh/identity/v1/document"),
  medmesh("client", "GET", "/_medmesh/admin/v1/identity/reviews[/{userId}/document]"),
  medmesh("client", "POST", "/_medmesh/admin/v1/identity/reviews/{userId}"),
  // The admin console (console/): its pages, and its API (session cookie + CSRF token, not a Matrix token).
  medmesh("client", "GET", "/_medmesh/console[/{rest...}]"),
  medmesh("client", ["POST", "PUT", "DELETE"], "/_medmesh/console/api/v1/{rest...}"),
  medmesh("federation", "GET", "/_medmesh/fhir/r4/(Practitioner|HealthcareService)"),
  medmesh("federation", "GET", "/_medmesh/identity/v1/(attestations/{userId}|jwks)"),
  medmesh("client", "GET", "/_medmesh/groups/v1/directory"),
  medmesh("federation", "GET", "/_medmesh/groups/v1/directory"),
  medmesh("federation", "POST", "/_medmesh/identity/v1/revocations"),
  // A network channel of another organisation reads who of ours it invites (channels/routes.ts).
  medmesh("federation", "GET", "/_medmesh/channels/v1/members"),
];

export const ENDPOINTS: readonly EndpointEntry[] = [
  ...clientEndpoints,
  ...clientResources,
  ...mediaEndpoints,
  ...federationEndpoints,
  ...otherEndpoints,
  ...medmeshEndpoints,
];
