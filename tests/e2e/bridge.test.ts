import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import {
  EventTimeline,
  EventType,
  MsgType,
  RelationType,
  type MatrixClient,
  type MatrixEvent,
} from "matrix-js-sdk";
import { encryptAttachment } from "@medmesh/common";
import { TestVendor } from "../harness/interop-vendor.ts";
import { useTestNetwork, waitForRoomEvent, waitUntil, type TestUser } from "../harness/index.ts";

const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const net = useTestNetwork({
  name: "bridge",
  organisations: 1,
  organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
});
const org = () => net().orgs[0]!;
const delivered = (predicate: (e: Record<string, unknown>) => boolean, description: string) =>
  vendor.delivered(predicate, description);

const body = (e: MatrixEvent) => e.getContent().body as string | undefined;

describe("bridge: a Matrix user and a vendor user, in an encrypted portal", () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;

  it("a vendor user starts a direct conversation; the Matrix user reads the encrypted message", async () => {
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    roomId = await vendor.openConversation(
      {
        conversation_id: "c-direct-1",
        kind: "direct",
        creator: "anna",
        members: ["anna", alice.userId],
        users: [{ id: "anna", display_name: "Anna Smit (vendor)" }],
      },
      client,
    );
    const bridgeState = await waitUntil(
      () =>
        client
          .getRoom(roomId)
          ?.getLiveTimeline()
          .getState(EventTimeline.FORWARDS)
          ?.getStateEvents("m.bridge")[0],
      "m.bridge state in the portal",
    );
    expect(bridgeState.getContent()).toMatchObject({
      protocol: { id: "refmsg" },
      channel: { id: "c-direct-1" },
    });
    expect(client.getRoom(roomId)?.hasEncryptionStateEvent()).toBe(true);

    await vendor.send({
      type: "message",
      conversation_id: "c-direct-1",
      message_id: "m1",
      sender: "anna",
      text: "Hello from the other messenger",
    });
    const hello = await waitForRoomEvent(
      client,
      roomId,
      (e) => body(e) === "Hello from the other messenger",
      { description: "the vendor's message, decrypted" },
    );
    expect(hello.isEncrypted()).toBe(true);
    expect(hello.getSender()).toMatch(/^@bridge_refmsg_anna:/);
  });

  it("carries Matrix → vendor: text, reply, edit, reaction, deletion, read receipt", async () => {
    const { event_id: mine } = await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "Hi Anna, about the patient",
    });
    const m = await delivered(
      (e) => e.type === "message" && e.text === "Hi Anna, about the patient",
      "Alice's message at the vendor",
    );
    expect(m).toMatchObject({ conversation_id: "c-direct-1", sender: alice.userId, message_id: mine });

    await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "> <@bridge_refmsg_anna:x> Hello\n\nyes, hello",
      "m.relates_to": {
        "m.in_reply_to": {
          event_id: (await firstEventFrom(client, roomId, "Hello from the other messenger")).getId()!,
        },
      },
    });
    await delivered(
      (e) => e.type === "message" && e.text === "yes, hello" && e.reply_to === "m1",
      "the reply, pointing at m1",
    );

    await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "* Hi Anna, about the patient in bed 3",
      "m.new_content": { msgtype: MsgType.Text, body: "Hi Anna, about the patient in bed 3" },
      "m.relates_to": { rel_type: RelationType.Replace, event_id: mine },
    });
    await delivered((e) => e.type === "edit" && e.message_id === mine, "the edit");

    await client.sendEvent(roomId, EventType.Reaction, {
      "m.relates_to": {
        rel_type: RelationType.Annotation,
        event_id: (await firstEventFrom(client, roomId, "Hello from the other messenger")).getId()!,
        key: "👍",
      },
    });
    await delivered(
      (e) => e.type === "reaction" && e.message_id === "m1" && e.key === "👍",
      "the reaction on m1",
    );

    await client.redactEvent(roomId, mine);
    await delivered((e) => e.type === "delete" && e.message_id === mine, "the deletion");

    const hello = await firstEventFrom(client, roomId, "Hello from the other messenger");
    await client.sendReadReceipt(hello);
    await delivered(
      (e) => e.type === "receipt" && e.message_id === "m1" && e.user_id === alice.userId,
      "the read receipt",
    );
  });

  it("carries vendor → Matrix: reply, edit, reaction, deletion, receipt, image", async () => {
    const mine = vendor.received.find((r) => r.event.type === "message" && r.event.text === "yes, hello")!
      .event.message_id as string;
    await vendor.send({
      type: "message",
      conversation_id: "c-direct-1",
      message_id: "m2",
      sender: "anna",
      text: "replying",
      reply_to: mine,
    });
    const reply = await waitForRoomEvent(client, roomId, (e) => body(e) === "replying", {
      description: "the vendor's reply",
    });
    expect(reply.replyEventId).toBe(mine);

    await vendor.send({
      type: "edit",
      conversation_id: "c-direct-1",
      message_id: "m2",
      sender: "anna",
      text: "replying (edited)",
    });
    await waitForRoomEvent(
      client,
      roomId,
      (e) => (e.getContent()["m.new_content"] as { body?: string } | undefined)?.body === "replying (edited)",
      { description: "the edit" },
    );

    await vendor.send({
      type: "reaction",
      conversation_id: "c-direct-1",
      message_id: mine,
      sender: "anna",
      reaction_id: "r1",
      key: "✅",
    });
    await waitForRoomEvent(
      client,
      roomId,
      (e) => e.getType() === "m.reaction" && e.getRelation()?.key === "✅",
      { description: "the reaction" },
    );

    await vendor.send({ type: "delete", conversation_id: "c-direct-1", message_id: "m2", sender: "anna" });
    await waitUntil(
      () => client.getRoom(roomId)?.findEventById(reply.getId()!)?.isRedacted() || undefined,
      "the vendor's reply redacted",
    );

    await vendor.send({
      type: "receipt",
      conversation_id: "c-direct-1",
      message_id: mine,
      user_id: "anna",
      receipt: "read",
    });
    await waitUntil(
      () =>
        client.getRoom(roomId)?.getReadReceiptForUserId(reply.getSender()!, true)?.eventId === mine ||
        undefined,
      "Anna's read receipt on Alice's message",
    );

    const png = Buffer.from(
      "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082",
      "hex",
    );
    const up = await vendor.request("/_medmesh/interop/v1/media/img-1", {
      method: "PUT",
      body: png,
      contentType: "image/png",
    });
    expect(up.status, await up.clone().text()).toBe(201);
    await vendor.send({
      type: "message",
      conversation_id: "c-direct-1",
      message_id: "m3",
      sender: "anna",
      text: "scan.png",
      file: { media_id: "img-1", name: "scan.png", content_type: "image/png", size: png.length },
    });
    const image = await waitForRoomEvent(client, roomId, (e) => e.getContent().msgtype === MsgType.Image, {
      description: "the image",
    });
    expect(image.getContent().file, "an encrypted attachment in an encrypted room").toBeDefined();
  });

  it("a Matrix user starts a group conversation by inviting a ghost; an image reaches the vendor", async () => {
    const { room_id } = await client.createRoom({
      name: "Ward 5 handover",
      invite: [`@bridge_refmsg_ben:${org().serverName}`],
    });
    const created = await delivered(
      (e) => e.type === "conversation.create" && e.conversation_id === room_id,
      "the group at the vendor",
    );
    expect(created).toMatchObject({ kind: "group", creator: alice.userId });
    expect(created.members).toEqual(expect.arrayContaining([alice.userId, "ben"]));
    await waitUntil(
      async () =>
        (await client.getJoinedRoomMembers(room_id)).joined[`@bridge_refmsg_ben:${org().serverName}`],
      "Ben's ghost joined",
    );
    await client.sendMessage(room_id, { msgtype: MsgType.Text, body: "Handover at 7" });
    await delivered(
      (e) => e.type === "message" && e.conversation_id === room_id && e.text === "Handover at 7",
      "the group message",
    );

    // An image from the Matrix side, as clients send it in an encrypted room.
    const picture = randomBytes(3000);
    const { ciphertext, file } = encryptAttachment(picture);
    const { content_uri } = await client.uploadContent(ciphertext, { type: "application/octet-stream" });
    await client.sendMessage(room_id, {
      msgtype: MsgType.Image,
      body: "wound.jpg",
      file: { url: content_uri, key: file.key, iv: file.iv, hashes: file.hashes, v: file.v },
      info: { mimetype: "image/jpeg", size: picture.length },
    });
    const message = await delivered(
      (e) => e.type === "message" && e.conversation_id === room_id && e.text === "wound.jpg",
      "the image at the vendor",
    );
    const media = message.file as { media_id: string; content_type: string; size: number };
    expect(media).toMatchObject({ content_type: "image/jpeg", size: picture.length });
    const download = await vendor.request(`/_medmesh/interop/v1/media/${media.media_id}`, { method: "GET" });
    expect(download.status).toBe(200);
    expect(
      Buffer.from(await download.arrayBuffer()).equals(picture),
      "the vendor gets the decrypted bytes",
    ).toBe(true);
  });
});

async function firstEventFrom(client: MatrixClient, roomId: string, text: string): Promise<MatrixEvent> {
  return waitForRoomEvent(client, roomId, (e) => body(e) === text, { description: text });
}
