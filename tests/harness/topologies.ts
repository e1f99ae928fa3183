/**
 * The worker topology the existing end-to-end suites run against a second time (the
 * `*-workers.test.ts` files): 2 generic workers, an event persister, a federation sender, the
 * media repository and the appservice notifier, with some streams moved to generic workers so
 * their routes are exercised too. Needs PostgreSQL (MEDMESH_TEST_POSTGRES_URL) and redis-server.
 */
export const WORKER_TOPOLOGY = {
  generic: 2,
  event_persister: 1,
  federation_sender: 1,
  media_repository: 1,
  appservice: 1,
  stream_writers: { to_device: ["generic1"], account_data: ["generic2"], receipts: ["generic2"] },
};
