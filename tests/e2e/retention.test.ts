import { existsSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { RunningOrganisation } from "@medmesh/deploy";
import { describe, expect, it } from "vitest";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import { useTestNetwork, waitForMembership, type TestUser } from "../harness/index.ts";

const net = useTestNetwork({ name: "retention", organisations: 2 });
const DAY = 86_400_000;
const org = (i: number): RunningOrganisation => net().orgs[i]!;
const policy = (o: RunningOrganisation) => o.services.find((s) => s.name === "policy-module")!;
const enc = encodeURIComponent;

/** Sends as the room-admin bot with an origin timestamp in the past (the appservice `ts` parameter). */
async function sendOld(o: RunningOrganisation, roomId: string, type: string, content: object, ageMs: number) {
  const svc = policy(o);
  const url = new URL(
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/${type}/old-${String(Math.random()).slice(2)}`,
    o.synapseUrl,
  );
  url.searchParams.set("user_id", `@medmesh:${o.serverName}`);
  url.searchParams.set("ts", String(Date.now() - ageMs));
  const res = await fetch(url, {
    method: "PUT",
    headers: { authorization: `Bearer ${svc.registration.as_token}`, "content-type": "application/json" },
    body: JSON.stringify(content),
  });
  const body = (await res.json()) as { event_id?: string; error?: string };
  if (!body.event_id) throw new Error(`could not send an old event: ${body.error ?? String(res.status)}`);
  return body.event_id;
}

async function admin(o: RunningOrganisation, method: string, path: string, body?: unknown) {
  const res = await fetch(`${policy(o).url}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return (await res.json()) as Record<string, unknown>;
}
const sweep = (o: RunningOrganisation, now?: Date) =>
  admin(o, "POST", "/_medmesh/admin/v1/retention/sweep", now ? { now: now.toISOString() } : {});

/** An event as a member sees it through their organisation's proxy: content, redacted, or gone. */
async function seen(
  user: TestUser,
  roomId: string,
  eventId: string,
): Promise<"content" | "redacted" | "gone"> {
  const res = await fetch(
    `${user.org.clientUrl}/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`,
    {
      headers: { authorization: `Bearer ${user.accessToken}` },
    },
  );
  if (res.status === 404) return "gone";
  const e = (await res.json()) as { content?: object; unsigned?: { redacted_because?: unknown } };
  return e.unsigned?.redacted_because !== undefined || Object.keys(e.content ?? {}).length === 0
    ? "redacted"
    : "content";
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Whether any row of Synapse's own event store still holds the text. */
function inSynapseDb(o: RunningOrganisation, text: string): boolean {
  const db = new DatabaseSync(o.paths.sqliteDb, { readOnly: true });
  try {
    const row = db.prepare("SELECT count(*) AS n FROM event_json WHERE json LIKE ?").get(`%${text}%`) as {
      n: number;
    };
    return row.n > 0;
  } finally {
    db.close();
  }
}

describe("30-day retention", () => {
  let ann: TestUser;
  let bram: TestUser;
  let roomId: string;
  const ids: Record<string, string> = {};

  it("redacts expired messages on both organisations, purges them from Synapse and deletes their media; pinned and newer messages stay", async () => {
    const a = org(0);
    ann = await net().registerUser(a, "ann");
    bram = await net().registerUser(org(1), "bram");
    const [annClient, bramClient] = await Promise.all([net().client(ann), net().client(bram)]);
    ({ room_id: roomId } = await annClient.createRoom({ invite: [bram.userId] }));
    await waitForMembership(bramClient, roomId, "invite");
    await bramClient.joinRoom(roomId);
    // The bot joined and put the organisation's policy on the room.
    await waitFor(async () => {
      const state = await annClient.getStateEvent(roomId, "m.room.retention", "").catch(() => undefined);
      return (state as { max_lifetime?: number } | undefined)?.max_lifetime === 30 * DAY;
    }, "the room carries m.room.retention of 30 days");

    const { content_uri: mxc } = await annClient.uploadContent(JPEG_WITH_GPS, { type: "image/jpeg" });
    const mediaId = mxc.split("/").pop() ?? "";
    const mediaFile = join(
      a.paths.mediaStore,
      "local_content",
      mediaId.slice(0, 2),
      mediaId.slice(2, 4),
      mediaId.slice(4),
    );
    expect(existsSync(mediaFile)).toBe(true);

    ids.plain = await sendOld(
      a,
      roomId,
      "m.room.message",
      { msgtype: "m.text", body: "old-plain-7f3a" },
      40 * DAY,
    );
    ids.encrypted = await sendOld(
      a,
      roomId,
      "m.room.encrypted",
      {
        algorithm: "m.megolm.v1.aes-sha2",
        ciphertext: "old-cipher-9b1c",
        sender_key: "k",
        session_id: "s",
        device_id: "D",
      },
      39 * DAY,
    );
    ids.image = await sendOld(
      a,
      roomId,
      "m.room.message",
      { msgtype: "m.image", body: "x.jpg", url: mxc },
      38 * DAY,
    );
    ids.kept = await sendOld(
      a,
      roomId,
      "m.room.message",
      { msgtype: "m.text", body: "old-kept-4d2e" },
      37 * DAY,
    );
    ids.fresh = await sendOld(
      a,
      roomId,
      "m.room.message",
      { msgtype: "m.text", body: "fresh-8c5f" },
      2 * DAY,
    );
    await annClient.sendStateEvent(
      roomId,
      "m.room.pinned_events" as never,
      { pinned: [ids.kept] } as never,
      "",
    );
    await waitFor(async () => {
      const s = await admin(a, "GET", "/_medmesh/admin/v1/retention/status");
      return Number(s.indexed) >= 5 && Number(s.kept) === 1;
    }, "the appservice indexed the events and the pin");

    const result = await sweep(a);
    expect(result).toMatchObject({ ran: true, redacted: 3, failed: 0, purged_rooms: 1, media_deleted: 1 });
    for (const user of [ann, bram])
      for (const key of ["plain", "encrypted", "image"])
        await waitFor(
          async () => (await seen(user, roomId, ids[key]!)) !== "content",
          `${user.userId} no longer sees ${key}`,
        );
    expect(await seen(ann, roomId, ids.kept)).toBe("content");
    expect(await seen(bram, roomId, ids.fresh)).toBe("content");
    expect(inSynapseDb(a, "old-plain-7f3a")).toBe(false);
    expect(inSynapseDb(a, "old-cipher-9b1c")).toBe(false);
    expect(inSynapseDb(a, "old-kept-4d2e")).toBe(true);
    expect(existsSync(mediaFile)).toBe(false);

    // A second sweep finds nothing to do (idempotent).
    expect(await sweep(a)).toMatchObject({ ran: true, redacted: 0, already_redacted: 0, failed: 0 });

    // Un-pinning ends the keep: the next sweep removes it.
    await annClient.sendStateEvent(roomId, "m.room.pinned_events" as never, { pinned: [] } as never, "");
    await waitFor(
      async () => Number((await admin(a, "GET", "/_medmesh/admin/v1/retention/status")).kept) === 0,
      "the keep ended",
    );
    expect(await sweep(a)).toMatchObject({ redacted: 1 });
    expect(await seen(bram, roomId, ids.kept)).not.toBe("content");
    expect(await seen(ann, roomId, ids.fresh)).toBe("content");
  });

  it("ends a keep at the organisation's maximum keep period", async () => {
    const a = org(0);
    const annClient = await net().client(ann);
    const id = await sendOld(a, roomId, "m.room.message", { msgtype: "m.text", body: "kept-long" }, 40 * DAY);
    await annClient.sendStateEvent(roomId, "m.room.pinned_events" as never, { pinned: [id] } as never, "");
    await waitFor(
      async () => Number((await admin(a, "GET", "/_medmesh/admin/v1/retention/status")).kept) === 1,
      "pinned",
    );
    expect(await sweep(a)).toMatchObject({ redacted: 0 });
    // 180 days (max_keep_days) after it was sent, the keep no longer protects it (nor does
    // anything protect the message that was 2 days old, 141 days ago).
    expect(await sweep(a, new Date(Date.now() + 141 * DAY))).toMatchObject({ redacted: 2 });
    expect(await seen(ann, roomId, ids.fresh!)).not.toBe("content");
    expect(await seen(ann, roomId, id)).not.toBe("content");
  });

  it("honours a room's shorter period and refuses a longer one", async () => {
    const a = org(0);
    const annClient = await net().client(ann);
    const { room_id: short } = await annClient.createRoom({});
    await waitFor(
      async () =>
        (await annClient.getStateEvent(short, "m.room.retention", "").catch(() => undefined)) !== undefined,
      "the bot set the policy",
    );
    await annClient.sendStateEvent(
      short,
      "m.room.retention" as never,
      { max_lifetime: 5 * DAY } as never,
      "",
    );
    const tooLong = 60 * DAY;
    const { room_id: long } = await annClient.createRoom({});
    await waitFor(
      async () =>
        (await annClient.getStateEvent(long, "m.room.retention", "").catch(() => undefined)) !== undefined,
      "the bot set the policy",
    );
    await annClient.sendStateEvent(long, "m.room.retention" as never, { max_lifetime: tooLong } as never, "");
    await waitFor(async () => {
      const s = (await annClient.getStateEvent(long, "m.room.retention", "")) as { max_lifetime?: number };
      return s.max_lifetime === 30 * DAY;
    }, "the bot set the longer period back to 30 days");

    const inShort = await sendOld(
      a,
      short,
      "m.room.message",
      { msgtype: "m.text", body: "ten-days-short" },
      10 * DAY,
    );
    const inLong = await sendOld(
      a,
      long,
      "m.room.message",
      { msgtype: "m.text", body: "ten-days-long" },
      10 * DAY,
    );
    await waitFor(
      async () => Number((await admin(a, "GET", "/_medmesh/admin/v1/retention/status")).waiting) >= 2,
      "indexed",
    );
    expect(await sweep(a)).toMatchObject({ redacted: 1 });
    expect(await seen(ann, short, inShort)).not.toBe("content");
    expect(await seen(ann, long, inLong)).toBe("content");
  });
});
