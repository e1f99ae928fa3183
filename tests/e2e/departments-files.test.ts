import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decryptAttachment, encryptAttachment, isEncryptedFile } from "@medmesh/common";
import type { MatrixClient, MatrixEvent } from "matrix-js-sdk";
import { departmentsKit, hour } from "./departments-kit.ts";
import { describe, expect, it } from "vitest";
import { adminApi, waitForRoomEvent, waitUntil } from "../harness/index.ts";

// Files and images through a department account (docs/departments.md): decrypted by the account,
// uploaded again under a fresh key into the desk or the conversation, within A's Synapse upload
// limit (1 MiB here); a larger file is not passed on and the sender is told.
const MiB = 1024 * 1024;
const { net, user, A, auditA } = departmentsKit("departments-files", {
  organisationSettings: { 0: { proxy_limits: { media_body_bytes: MiB } } },
});

/** An attachment as clients send one in an encrypted room: ciphertext uploaded, the key in the event. */
const sendFile = async (c: MatrixClient, roomId: string, msgtype: string, name: string, data: Buffer) => {
  const { ciphertext, file } = encryptAttachment(data);
  const { content_uri } = await c.uploadContent(ciphertext, { type: "application/octet-stream" });
  const sent = await c.sendMessage(roomId, {
    msgtype,
    body: name,
    info: { mimetype: msgtype === "m.image" ? "image/png" : "application/pdf", size: data.length },
    file: { ...file, url: content_uri },
  } as never);
  return { event_id: sent.event_id, url: content_uri, key: file.key.k };
};
/** The attachment of a received event, downloaded through the client's own server and decrypted. */
const openFile = async (c: MatrixClient, e: MatrixEvent): Promise<Buffer> => {
  const file = e.getContent().file as unknown;
  if (!isEncryptedFile(file)) throw new Error("expected an encrypted attachment");
  const url = c.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
  if (!url) throw new Error("not an mxc URL");
  const res = await fetch(url, { headers: { authorization: `Bearer ${c.getAccessToken() ?? ""}` } });
  expect(res.status).toBe(200);
  return decryptAttachment(Buffer.from(await res.arrayBuffer()), file);
};
const fileEvent = (c: MatrixClient, roomId: string, sender: string, body: string, who: string) =>
  waitForRoomEvent(
    c,
    roomId,
    (e) => e.getType() === "m.room.message" && e.getSender() === sender && e.getContent().body === body,
    { description: who, timeoutMs: 60_000 },
  );

describe("files through a department account", () => {
  it("relays an image to the desk and a file back, re-encrypted, and refuses one over the upload limit", async () => {
    const id = `radio-${randomBytes(3).toString("hex")}`;
    const deptUserId = `@medmesh-dept-${id}:${A().serverName}`;
    const [anna, gerda] = await Promise.all([user(0, "anna"), user(1, "gerda")]);
    const [ac, gc] = await Promise.all([net().client(anna), net().client(gerda)]);
    await adminApi(A(), "policy-module").json("PUT", `/_medmesh/admin/v1/departments/${id}`, {
      name: "Radiology on duty",
      members: [anna.userId],
      rota: [
        {
          from: new Date(Date.now() - hour).toISOString(),
          until: new Date(Date.now() + 8 * hour).toISOString(),
          on_duty: [anna.userId],
        },
      ],
    });
    const { room_id: roomId } = await gc.createRoom({ invite: [deptUserId] });
    await waitUntil(
      () => gc.getRoom(roomId)?.getMember(deptUserId)?.membership === "join",
      "the department account joins Gerda's room",
      60_000,
    ).catch(async (err: unknown) => {
      // What each side holds (a stale membership in Gerda's client was the cause once: docs/departments.md).
      const log = readFileSync(join(A().paths.root, "logs", "policy-module.log"), "utf8")
        .split("\n")
        .filter((l) => l.includes(id) || l.includes(roomId) || /"level":(40|50)/.test(l))
        .slice(-30);
      const room = gc.getRoom(roomId);
      const seen = room
        ? `Gerda's client: her membership ${room.getMyMembership()}, members ${JSON.stringify(
            room.getMembers().map((m) => [m.userId, m.membership]),
          )}, timeline ${JSON.stringify(
            room
              .getLiveTimeline()
              .getEvents()
              .map((e) => [e.getType(), e.getStateKey(), e.getContent().membership]),
          )}`
        : "Gerda's client has no such room";
      const server = await gc.getJoinedRoomMembers(roomId).then(
        (r) => JSON.stringify(Object.keys(r.joined)),
        (e: unknown) => String(e),
      );
      throw new Error(
        `${(err as Error).message}; ${seen}; B's Synapse says joined: ${server}; sync state ${String(gc.getSyncState())}; A's policy module log:\n${log.join("\n")}`,
      );
    });

    // Gerda's image reaches Anna's desk, from the account, under another key, byte for byte.
    const image = randomBytes(200 * 1024);
    const sent = await sendFile(gc, roomId, "m.image", "knee.png", image);
    const relayed = await waitUntil(
      async () =>
        (await auditA().find({ action: "department.message", object: roomId })).find(
          (r) => r.details.event_id === sent.event_id,
        ),
      "the image's relay is audited",
      60_000,
    );
    expect(relayed).toMatchObject({ outcome: "relayed", details: { kind: "file" } });
    const deskId = String(relayed.details.desk_room_id);
    await waitUntil(() => ac.getRoom(deskId)?.getMyMembership() === "invite", "Anna is invited to the desk");
    await ac.joinRoom(deskId);
    const inDesk = await fileEvent(
      ac,
      deskId,
      deptUserId,
      `${gerda.userId}: knee.png`,
      "Anna gets the image",
    );
    expect(inDesk.getContent()).toMatchObject({
      msgtype: "m.image",
      info: { mimetype: "image/png", size: image.length },
    });
    // Uploaded again on A under a fresh key: the desk never gets the key of Gerda's room.
    const deskFile = inDesk.getContent().file as { url: string; key: { k: string } };
    expect(deskFile.url).not.toBe(sent.url);
    expect(deskFile.url.startsWith(`mxc://${A().serverName}/`)).toBe(true);
    expect(deskFile.key.k).not.toBe(sent.key);
    expect((await openFile(ac, inDesk)).equals(image)).toBe(true);

    // Anna answers with a file: Gerda gets it from the department account.
    const report = randomBytes(120 * 1024);
    const answer = await sendFile(ac, deskId, "m.file", "report.pdf", report);
    const got = await fileEvent(gc, roomId, deptUserId, "report.pdf", "Gerda gets Anna's file");
    expect(got.getContent().msgtype).toBe("m.file");
    expect((await openFile(gc, got)).equals(report)).toBe(true);
    const replies = await auditA().find({ action: "department.reply", actor: anna.userId, object: roomId });
    expect(replies.map((r) => [r.outcome, r.details.desk_event_id, r.details.event_id])).toEqual([
      ["sent", answer.event_id, got.getId()],
    ]);

    // 1.5 MiB is more than A's Synapse takes: Gerda is told, the desk gets nothing.
    const big = await sendFile(gc, roomId, "m.file", "ct-scan.dcm", randomBytes(1.5 * MiB));
    const told = await waitForRoomEvent(
      gc,
      roomId,
      (e) => e.getSender() === deptUserId && e.getContent().msgtype === "m.notice",
      { description: "Gerda is told her file is too large", timeoutMs: 60_000 },
    );
    expect(told.getContent().body).toBe(
      "Your file (1.5 MB) is larger than 1.0 MB, the largest Radiology on duty can pass on: it was not passed on. Please send a smaller one.",
    );
    const refused = (await auditA().find({ action: "department.message", object: roomId })).find(
      (r) => r.details.event_id === big.event_id,
    );
    expect(refused).toMatchObject({ outcome: "too_large", actor: gerda.userId, details: { kind: "file" } });
    const deskBodies = ac
      .getRoom(deskId)
      ?.getLiveTimeline()
      .getEvents()
      .map((e) => String(e.getContent().body));
    expect(deskBodies).not.toContain(`${gerda.userId}: ct-scan.dcm`);
  });
});
