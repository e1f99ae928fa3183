import { generateKeyPairSync } from "node:crypto";
import { createStore, type Store } from "@medmesh/common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { InteropConfigSchema } from "../interop/config.ts";
import { BRIDGE_MIGRATIONS, createBridgeStore, type BridgeStore, type OutboundRow } from "../store/index.ts";
import type { BridgeCrypto } from "./crypto.ts";
import { deliverer } from "./deliver.ts";
import type { MatrixSide } from "./matrix.ts";
import type { MatrixToInterop } from "./to-interop.ts";

const ROOM = "!portal:hospital-a.example";
const REFMSG = "@bridge_refmsg_anna:hospital-a.example";
// Sorts before REFMSG: the first ghost of the room is of another vendor.
const OTHER = "@bridge_aaa_bo:hospital-a.example";

/** "Not delivered" notices in a portal (core/deliver.ts). */
for (const backend of storeBackends())
  describe(`the undelivered notice on ${backend.name}`, () => {
    let db: Awaited<ReturnType<typeof backend.make>>;
    let store: Store;
    let bridge: BridgeStore;
    const sent: { from: string; room: string; body: unknown }[] = [];
    // The one call the notice makes of the Matrix side, recorded (the homeserver is not the question here).
    const matrix = {
      send: (from: string, room: string, _type: string, content: { body: unknown }) => {
        sent.push({ from, room, body: content.body });
        return Promise.resolve("$notice");
      },
    } as unknown as MatrixSide;
    const notify = () =>
      deliverer({
        store: bridge,
        crypto: {} as unknown as BridgeCrypto,
        matrix,
        translate: {} as unknown as MatrixToInterop,
        config: InteropConfigSchema.parse({
          listen: { port: 0 },
          public_url: "https://bridge.hospital-a.example",
          signing_key: { key_id: "k", private_key_file: "unused.pem" },
        }),
        signingKey: { keyId: "k", privateKey: generateKeyPairSync("ed25519").privateKey },
      }).notifyUndelivered;
    const row = { seq: 7, vendor: "refmsg", conversation_id: "c-1", idempotency_key: "mx-$m" } as OutboundRow;

    beforeAll(async () => {
      db = await backend.make();
      store = await createStore(db.config, { migrations: BRIDGE_MIGRATIONS });
      bridge = createBridgeStore(store.knex);
      await bridge.portals.create(store.knex, { vendor: "refmsg", conversation_id: "c-1", kind: "direct" });
      await bridge.portals.setRoom(store.knex, "refmsg", "c-1", ROOM);
      await bridge.portals.addMember(ROOM, OTHER);
    });
    afterAll(async () => {
      await store.close();
      await db.cleanup();
    });

    it("comes from a ghost of the row's vendor, never from another vendor's ghost in the portal", async () => {
      await notify()(row, "the messenger answered 400");
      expect(sent).toEqual([]); // only the other vendor's ghost is there: its device runs elsewhere
      await bridge.portals.addMember(ROOM, REFMSG);
      await notify()(row, "the messenger answered 400");
      expect(sent).toEqual([
        { from: REFMSG, room: ROOM, body: "⚠ Not delivered to refmsg: the messenger answered 400" },
      ]);
    });
  });
