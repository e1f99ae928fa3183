/**
 * Which Synapse process serves which request, as data: the endpoint lists of Synapse's workers
 * documentation (element-hq/synapse docs/workers.md, for the pinned 1.163.2), one entry per list.
 * The deploy generator resolves each entry against an organisation's worker topology into the
 * proxy's routing table (`proxy.workers`); deploy/src/workers/routes.test.ts checks that every
 * routed pattern lands on a process the generated Synapse config runs for it. Requests no entry
 * matches go to the main process, which serves every endpoint except the media repository's.
 *
 * Order matters: the first entry that matches and resolves to a running worker wins, so the
 * stream writers' endpoints come before the generic workers' (which also list some of them).
 */

/** Synapse's streams that a worker can write (`stream_writers`). */
export const WORKER_STREAMS = [
  "events",
  "typing",
  "to_device",
  "account_data",
  "receipts",
  "presence",
  "push_rules",
  "device_lists",
] as const;
export type WorkerStream = (typeof WORKER_STREAMS)[number];

/**
 * How a request picks one of several workers: `round_robin` for stateless reads; `user` keeps a
 * user's /sync on one worker (its caches); `room` keeps a room's event sending and pagination on
 * one (Synapse asks that pagination of a room stays on one instance); `origin` keeps a remote
 * server's inbound transactions on one, as the docs recommend.
 */
export type Balance = "round_robin" | "user" | "room" | "origin";

export type WorkerTarget =
  | { kind: "generic" }
  | { kind: "media_repository" }
  /** The worker(s) writing this stream; the entry does not apply while the main process writes it. */
  | { stream: WorkerStream };

export interface WorkerRoute {
  /** What the docs call the list, for logs and the docs. */
  name: string;
  listener: "client" | "federation";
  target: WorkerTarget;
  balance: Balance;
  /** Only these methods (absent: every method). */
  methods?: readonly string[];
  /** Regular expressions on the raw path, as in Synapse's docs. */
  patterns: readonly string[];
}

const generic = { kind: "generic" } as const;
const stream = (s: WorkerStream) => ({ stream: s });
const C = "^/_matrix/client";

export const WORKER_ROUTES: readonly WorkerRoute[] = [
  // The stream writers' own endpoints ("Stream writers" in workers.md).
  {
    name: "typing",
    listener: "client",
    target: stream("typing"),
    balance: "round_robin",
    patterns: [`${C}/(api/v1|r0|v3|unstable)/rooms/.*/typing`],
  },
  {
    name: "to_device",
    listener: "client",
    target: stream("to_device"),
    balance: "round_robin",
    patterns: [`${C}/(r0|v3|unstable)/sendToDevice/`],
  },
  {
    name: "account_data",
    listener: "client",
    target: stream("account_data"),
    balance: "round_robin",
    patterns: [`${C}/(r0|v3|unstable)/.*/tags`, `${C}/(r0|v3|unstable)/.*/account_data`],
  },
  {
    name: "receipts",
    listener: "client",
    target: stream("receipts"),
    balance: "round_robin",
    patterns: [`${C}/(r0|v3|unstable)/rooms/.*/receipt`, `${C}/(r0|v3|unstable)/rooms/.*/read_markers`],
  },
  {
    name: "presence",
    listener: "client",
    target: stream("presence"),
    balance: "round_robin",
    patterns: [`${C}/(api/v1|r0|v3|unstable)/presence/`],
  },
  {
    name: "push_rules",
    listener: "client",
    target: stream("push_rules"),
    balance: "round_robin",
    patterns: [`${C}/(api/v1|r0|v3|unstable)/pushrules/`],
  },
  {
    name: "device_lists",
    listener: "client",
    target: stream("device_lists"),
    balance: "user",
    patterns: [
      `${C}/(r0|v3)/delete_devices$`,
      `${C}/(api/v1|r0|v3|unstable)/devices(/|$)`,
      `${C}/(r0|v3|unstable)/keys/upload`,
      `${C}/(api/v1|r0|v3|unstable)/keys/device_signing/upload$`,
      `${C}/(api/v1|r0|v3|unstable)/keys/signatures/upload$`,
    ],
  },
  // synapse.app.media_repository: every media endpoint, on both listeners.
  {
    name: "media",
    listener: "client",
    target: { kind: "media_repository" },
    balance: "round_robin",
    patterns: [
      "^/_matrix/media/",
      `${C}/v1/media/`,
      "^/_synapse/admin/v1/purge_media_cache$",
      "^/_synapse/admin/v1/room/.*/media.*$",
      "^/_synapse/admin/v1/user/.*/media.*$",
      "^/_synapse/admin/v1/media/.*$",
      "^/_synapse/admin/v1/quarantine_media/.*$",
      "^/_synapse/admin/v1/users/.*/media$",
    ],
  },
  {
    name: "federation media",
    listener: "federation",
    target: { kind: "media_repository" },
    balance: "round_robin",
    patterns: ["^/_matrix/federation/v1/media/", "^/_matrix/media/"],
  },
  // synapse.app.generic_worker, "Sync requests": one worker per user.
  {
    name: "sync",
    listener: "client",
    target: generic,
    balance: "user",
    patterns: [
      `${C}/(r0|v3)/sync$`,
      `${C}/(api/v1|r0|v3)/events$`,
      `${C}/(api/v1|r0|v3)/initialSync$`,
      `${C}/(api/v1|r0|v3)/rooms/[^/]+/initialSync$`,
    ],
  },
  {
    name: "inbound federation transactions",
    listener: "federation",
    target: generic,
    balance: "origin",
    patterns: ["^/_matrix/federation/v1/send/"],
  },
  {
    name: "federation requests",
    listener: "federation",
    target: generic,
    balance: "round_robin",
    patterns: [
      "^/_matrix/federation/v1/version$",
      "^/_matrix/federation/v1/event/",
      "^/_matrix/federation/v1/state/",
      "^/_matrix/federation/v1/state_ids/",
      "^/_matrix/federation/v1/backfill/",
      "^/_matrix/federation/v1/get_missing_events/",
      "^/_matrix/federation/v1/publicRooms",
      "^/_matrix/federation/v1/query/",
      "^/_matrix/federation/v1/make_join/",
      "^/_matrix/federation/v1/make_leave/",
      "^/_matrix/federation/(v1|v2)/send_join/",
      "^/_matrix/federation/(v1|v2)/send_leave/",
      "^/_matrix/federation/v1/make_knock/",
      "^/_matrix/federation/v1/send_knock/",
      "^/_matrix/federation/(v1|v2)/invite/",
      "^/_matrix/federation/v1/event_auth/",
      "^/_matrix/federation/v1/timestamp_to_event/",
      "^/_matrix/federation/v1/exchange_third_party_invite/",
      "^/_matrix/federation/v1/user/devices/",
      "^/_matrix/key/v2/query",
      "^/_matrix/federation/v1/hierarchy/",
    ],
  },
  {
    name: "event sending",
    listener: "client",
    target: generic,
    balance: "room",
    patterns: [
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/redact`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/send`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/state/`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$`,
      `${C}/(api/v1|r0|v3|unstable)/join/`,
      `${C}/(api/v1|r0|v3|unstable)/knock/`,
      `${C}/(api/v1|r0|v3|unstable)/profile/`,
    ],
  },
  {
    name: "pagination",
    listener: "client",
    target: generic,
    balance: "room",
    patterns: [`${C}/(api/v1|r0|v3|unstable)/rooms/.*/messages$`],
  },
  {
    name: "client requests",
    listener: "client",
    target: generic,
    balance: "round_robin",
    patterns: [
      `${C}/(api/v1|r0|v3|unstable)/createRoom$`,
      `${C}/(api/v1|r0|v3|unstable)/publicRooms$`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/members$`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/state$`,
      `${C}/v1/rooms/.*/hierarchy$`,
      `${C}/(v1|unstable)/rooms/.*/relations/`,
      `${C}/v1/rooms/.*/threads$`,
      `${C}/(r0|v3|unstable)/account/whoami$`,
      `${C}/(r0|v3|unstable)/account/deactivate$`,
      `${C}/(r0|v3)/delete_devices$`,
      `${C}/(api/v1|r0|v3|unstable)/devices(/|$)`,
      `${C}/versions$`,
      `${C}/(api/v1|r0|v3|unstable)/voip/turnServer$`,
      `${C}/(api/v1|r0|v3|unstable)/rooms/.*/event/`,
      `${C}/(api/v1|r0|v3|unstable)/joined_rooms$`,
      `${C}/v1/rooms/.*/timestamp_to_event$`,
      `${C}/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases`,
      `${C}/(api/v1|r0|v3|unstable)/search$`,
      `${C}/(r0|v3|unstable)/user/.*/filter(/|$)`,
      `${C}/(api/v1|r0|v3|unstable)/directory/room/.*$`,
      `${C}/(r0|v3|unstable)/capabilities$`,
      `${C}/(r0|v3|unstable)/notifications$`,
      "^/_synapse/admin/v1/rooms/[^/]+$",
    ],
  },
  {
    name: "encryption requests",
    listener: "client",
    target: generic,
    balance: "round_robin",
    patterns: [
      `${C}/(r0|v3|unstable)/keys/query$`,
      `${C}/(r0|v3|unstable)/keys/changes$`,
      `${C}/(r0|v3|unstable)/keys/claim$`,
      `${C}/(r0|v3|unstable)/room_keys/`,
      `${C}/(r0|v3|unstable)/keys/upload`,
      `${C}/(api/v1|r0|v3|unstable)/keys/device_signing/upload$`,
      `${C}/(api/v1|r0|v3|unstable)/keys/signatures/upload$`,
    ],
  },
  {
    name: "registration and login",
    listener: "client",
    target: generic,
    balance: "round_robin",
    patterns: [
      `${C}/(api/v1|r0|v3|unstable)/login$`,
      `${C}/(r0|v3|unstable)/register$`,
      `${C}/(r0|v3|unstable)/register/available$`,
      `${C}/v1/register/m.login.registration_token/validity$`,
      `${C}/(r0|v3|unstable)/password_policy$`,
    ],
  },
  {
    name: "user directory search",
    listener: "client",
    target: generic,
    balance: "round_robin",
    patterns: [`${C}/(r0|v3|unstable)/user_directory/search$`],
  },
  // "Additionally, the following REST endpoints can be handled for GET requests" (their writes
  // go to the stream's writer above, or the main process).
  {
    name: "reads of stream-written data",
    listener: "client",
    target: generic,
    balance: "round_robin",
    methods: ["GET"],
    patterns: [
      `${C}/(api/v1|r0|v3|unstable)/pushrules/`,
      `${C}/(r0|v3|unstable)/.*/tags`,
      `${C}/(r0|v3|unstable)/.*/account_data`,
      `${C}/(api/v1|r0|v3|unstable)/presence/`,
    ],
  },
];
