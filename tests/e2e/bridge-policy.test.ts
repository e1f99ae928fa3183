import { afterAll, describe, expect, it } from "vitest";
import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { createAuditLog } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { TestVendor } from "../harness/interop-vendor.ts";
import { adminApi, useTestNetwork, waitForRoomEvent, waitUntil, type TestUser } from "../harness/index.ts";

// Policy applies to bridged users: the bridge acts through the organisation's proxy, the
// identity module verifies vendor users with a registration, and retention reaches the vendor.
const ANNEKE: BigTestRecord = {
  number: "19012345601",
  initials: "A.",
  prefix: "de",
  surname: "Vries",
  mailingName: "A. de Vries",
  professionCode: "01",
};
const MARIEKE: BigTestRecord = {
  number: "29012345602",
  initials: "M.",
  surname: "Jansen",
  mailingName: "M. Jansen",
  professionCode: "30",
};
const big = await startBigTestServer([ANNEKE, MARIEKE]);
const vendor = new TestVendor();
await vendor.start();
afterAll(async () => {
  await vendor.stop();
  await big.stop();
});

const net = useTestNetwork({
  name: "bridge-policy",
  organisations: 1,
  identity: {
    registries: { big: { url: big.url, timeout_ms: 1500 } },
    reverify: { schedule: "0 3 * * *", concurrency: 4, rate_per_second: 100 },
  },
  // The registry-only path for vendor users (a bridged user cannot send an ID document).
  organisationSettings: { 0: { bridge_vendors: [vendor.setting], require_id_document: false } },
});
const org = (): RunningOrganisation => net().orgs[0]!;
const service = (name: string) => org().services.find((s) => s.name === name)!;
const ghostOf = (id: string) => `@bridge_${vendor.id}_${id}:${org().serverName}`;
const enc = encodeURIComponent;

async function clientApi(user: TestUser, method: string, path: string, body?: unknown) {
  const res = await fetch(`${org().clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const badgeOf = async (reader: TestUser, roomId: string, userId: string) =>
  clientApi(
    reader,
    "GET",
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/org.medmesh.verification/${enc(`user:${userId}`)}`,
  );

const joined = (client: MatrixClient, roomId: string, userId: string) =>
  waitUntil(
    () => client.getRoom(roomId)?.getMember(userId)?.membership === "join",
    `${userId} joined the portal`,
  );

describe("bridge: MedMesh policy applies to bridged users", () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;

  it("verifies a vendor user who comes with a registration and badges them in the portal", async () => {
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    roomId = await vendor.openConversation(
      {
        conversation_id: "c-policy-1",
        kind: "direct",
        creator: "anneke",
        members: ["anneke", alice.userId],
        users: [
          {
            id: "anneke",
            display_name: "Anneke de Vries",
            registration: { registry: "BIG", number: ANNEKE.number },
            avatar_url: vendor.avatarUrl,
          },
        ],
      },
      client,
    );
    // Created through the proxy: encrypted, with the organisation's bot as room admin.
    const bot = `@medmesh:${org().serverName}`;
    await joined(client, roomId, bot);
    const power = await clientApi(
      alice,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.power_levels/`,
    );
    expect((power.body.users as Record<string, number>)[bot]).toBe(100);
    expect(client.getRoom(roomId)?.hasEncryptionStateEvent()).toBe(true);
    // The bridge host reads this room in plaintext: an access point in the audit log.
    const audit = createAuditLog(service("bridge").store.knex);
    expect(await audit.find({ action: "bridge.access_point" })).toHaveLength(1);
    const [portalRecord] = await audit.find({ action: "bridge.portal", object: roomId });
    expect(portalRecord).toMatchObject({
      actor: ghostOf("anneke"),
      details: { vendor: vendor.id, conversation_id: "c-policy-1" },
    });
    expect(await audit.verify()).toMatchObject({ ok: true });

    let badge: Record<string, unknown> = {};
    await waitUntil(async () => {
      const res = await badgeOf(alice, roomId, ghostOf("anneke"));
      badge = res.body;
      return res.status === 200 && badge.verified === true;
    }, "the vendor user's verified badge in the portal");
    expect(badge).toMatchObject({ verified: true, registry: "BIG", profession: "physician" });
    expect(typeof badge.attestation).toBe("string");
    // The registration number stays with the identity module; the badge and bridge logs never carry it.
    expect(JSON.stringify(badge)).not.toContain(ANNEKE.number);

    // A vendor user whose name does not match the registry is not verified, and is told nothing false.
    await vendor.send({
      type: "membership",
      conversation_id: "c-policy-1",
      user_id: "pieter",
      membership: "join",
      users: [
        {
          id: "pieter",
          display_name: "Pieter Bakker",
          registration: { registry: "BIG", number: MARIEKE.number },
          // Not one of the vendor's avatar origins: the bridge does not fetch it.
          avatar_url: "http://127.0.0.2:9/inside-the-hospital.png",
        },
      ],
    });
    await joined(client, roomId, ghostOf("pieter"));
    const knex = service("bridge").store.knex;
    const row = await waitUntil(
      () =>
        knex("bridge_ghosts")
          .where({ user_id: ghostOf("pieter"), verification_due: false })
          .whereNotNull("verification")
          .first<{ verification: string } | undefined>("verification"),
      "the identity module's answer for the mismatched name",
    );
    expect(row.verification).toMatch(/^rejected: .*name/i);
    const pieterBadge = await badgeOf(alice, roomId, ghostOf("pieter"));
    expect(pieterBadge.status === 404 || pieterBadge.body.verified === false).toBe(true);
  });

  it("takes over a vendor user's avatar from the vendor's configured origin, and nothing from elsewhere", async () => {
    const profile = async (userId: string) =>
      (await clientApi(alice, "GET", `/_matrix/client/v3/profile/${enc(userId)}`)).body;
    const { avatar_url: mxc } = await profile(ghostOf("anneke"));
    expect(String(mxc)).toMatch(/^mxc:\/\//);
    const [server, mediaId] = String(mxc).slice("mxc://".length).split("/");
    const picture = await fetch(
      `${org().clientUrl}/_matrix/client/v1/media/download/${server ?? ""}/${mediaId ?? ""}`,
      { headers: { authorization: `Bearer ${alice.accessToken}` } },
    );
    expect(Buffer.from(await picture.arrayBuffer()).equals(vendor.avatar)).toBe(true);
    expect(await profile(ghostOf("pieter"))).not.toHaveProperty("avatar_url");
  });

  it("tells the vendor when the retention period deletes messages, both directions", async () => {
    await vendor.send({
      type: "message",
      conversation_id: "c-policy-1",
      message_id: "m-old-1",
      sender: "anneke",
      text: "from the vendor, to expire",
    });
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === "from the vendor, to expire");
    const { event_id: matrixEvent } = await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "from Matrix, to expire",
    });
    await vendor.delivered(
      (e) => e.type === "message" && e.message_id === matrixEvent,
      "Alice's message at the vendor",
    );

    const res = await adminApi(org(), "policy-module").fetch("/_medmesh/admin/v1/retention/sweep", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ now: new Date(Date.now() + 31 * 86_400_000).toISOString() }),
    });
    expect(res.status).toBe(200);
    const bot = `@medmesh:${org().serverName}`;
    for (const messageId of ["m-old-1", matrixEvent]) {
      const deletion = await vendor.delivered(
        (e) => e.type === "delete" && e.message_id === messageId,
        `the retention deletion of ${messageId} at the vendor`,
      );
      expect(deletion).toMatchObject({ conversation_id: "c-policy-1", sender: bot, reason: "retention" });
    }
    // A person's deletion carries no retention reason.
    const { event_id: mine } = await client.sendMessage(roomId, { msgtype: MsgType.Text, body: "oops" });
    await client.redactEvent(roomId, mine);
    const own = await vendor.delivered(
      (e) => e.type === "delete" && e.message_id === mine,
      "Alice's own deletion at the vendor",
    );
    expect(own).not.toHaveProperty("reason");
  });

  it("refuses a vendor user's invitation where the Matrix user's invite permissions block it", async () => {
    const bob = await net().registerUser(org(), "bob");
    const set = await clientApi(
      bob,
      "PUT",
      `/_matrix/client/v3/user/${enc(bob.userId)}/account_data/de.gematik.tim.account.permissionconfig.pro.v1`,
      { defaultSetting: "block all", userExceptions: { [ghostOf("anneke")]: {} } },
    );
    expect(set.status).toBe(200);

    await vendor.send(
      {
        type: "conversation.create",
        conversation_id: "c-policy-blocked",
        kind: "direct",
        creator: "joris",
        members: ["joris", bob.userId],
        users: [{ id: "joris", display_name: "Joris Peeters" }],
      },
      "key-blocked",
    );
    const bridgeAdmin = adminApi(org(), "bridge");
    const failed = await waitUntil(async () => {
      const r = await bridgeAdmin.fetch("/_medmesh/admin/v1/bridge/inbound/failed");
      const { failed: rows } = (await r.json()) as {
        failed: { conversation_id: string; error: string }[];
      };
      return rows.find((f) => f.conversation_id === "c-policy-blocked");
    }, "the refused conversation among the bridge's failed events");
    expect(failed.error).toMatch(/M_FORBIDDEN/);
    // The vendor hears it too, for the request it sent, with the proxy's words.
    const told = await vendor.delivered(
      (e) => e.type === "undelivered" && e.conversation_id === "c-policy-blocked",
      "the vendor told that its conversation was refused",
    );
    expect(told).toMatchObject({ idempotency_key: "key-blocked", reason: failed.error });
    expect(told.reason).toMatch(/invit/i);

    // The exception: Anneke may invite Bob.
    const bobClient = await net().client(bob);
    const bobRoom = await vendor.openConversation(
      {
        conversation_id: "c-policy-allowed",
        kind: "direct",
        creator: "anneke",
        members: ["anneke", bob.userId],
      },
      bobClient,
    );
    expect(bobClient.getRoom(bobRoom)?.getMember(ghostOf("joris"))).toBeNull();
    const invites = await clientApi(bob, "GET", "/_matrix/client/v3/sync?timeout=0");
    expect(JSON.stringify(invites.body.rooms ?? {})).not.toContain(ghostOf("joris"));
  });
});
