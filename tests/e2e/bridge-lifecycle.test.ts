import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Knex } from "knex";
import { afterAll, describe, expect, it } from "vitest";
import { MsgType, type MatrixClient, type MatrixEvent } from "matrix-js-sdk";
import { createAuditLog, encryptAttachment } from "@medmesh/common";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import { TestVendor } from "../harness/interop-vendor.ts";
import {
  adminApi,
  OpenApiContract,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";

// The bridge keeps nothing it does not need (docs/bridge.md, "What the bridge keeps"): read
// directly in its tables, a bridged conversation's plaintext and file bytes are gone once
// delivered, what could not be delivered goes with the retention period, and so do the bridge's
// copies of every message the retention sweep redacts.
const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const net = useTestNetwork({
  name: "bridge-lifecycle",
  organisations: 1,
  organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
});
const org = (): RunningOrganisation => net().orgs[0]!;
const bridge = () => org().services.find((s) => s.name === "bridge")!;
const knex = () => bridge().store.knex;
const DAY = 86_400_000;
const later = (days: number) => new Date(Date.now() + days * DAY).toISOString();

const token = randomBytes(6).toString("hex");
const TEXT = {
  fromVendor: `vendor-says-${token}`,
  fromMatrix: `alice-says-${token}`,
  edit: `vendor-edits-${token}`,
  pending: `while-down-${token}`,
  dead: `refused-${token}`,
  failed: `never-carried-${token}`,
};
const FILE = { fromVendor: randomBytes(4096), fromMatrix: randomBytes(3000) };

/**
 * Every text, jsonb and bytea column of every table of the bridge's store that holds one of the
 * texts or a piece of one of the files: `table.column: what`.
 */
async function leftovers(db: Knex, texts: readonly string[] = Object.values(TEXT)): Promise<string[]> {
  const columns = await db("information_schema.columns")
    .where({ table_schema: "public" })
    .whereIn("data_type", ["text", "jsonb", "json", "bytea", "character varying", "ARRAY"])
    .select<{ table_name: string; column_name: string; data_type: string }[]>(
      "table_name",
      "column_name",
      "data_type",
    );
  const found: string[] = [];
  const has = async (table: string, sql: string, bindings: readonly Knex.Value[]) =>
    (await db(table).whereRaw(sql, bindings).first(db.raw("1"))) !== undefined;
  for (const { table_name: table, column_name: column, data_type: type } of columns) {
    const bytea = type === "bytea";
    for (const text of texts)
      if (
        bytea
          ? await has(table, "position(convert_to(?, 'UTF8') in ??) > 0", [text, column])
          : await has(table, "??::text LIKE ?", [column, `%${text}%`])
      )
        found.push(`${table}.${column}: ${text}`);
    for (const [name, file] of Object.entries(FILE)) {
      const piece = file.subarray(0, 48);
      const hit = bytea
        ? await has(table, "position(? in ??) > 0", [piece, column])
        : (await has(table, "??::text LIKE ?", [column, `%${piece.toString("base64")}%`])) ||
          (await has(table, "??::text LIKE ?", [column, `%${piece.toString("hex")}%`]));
      if (hit) found.push(`${table}.${column}: the file ${name}`);
    }
  }
  return found;
}

const settled = () =>
  waitUntil(async () => {
    const [out] = await knex()("bridge_outbound")
      .where({ state: "pending" })
      .count<{ n: string }[]>({ n: "*" });
    const [inb] = await knex()("interop_inbound")
      .where({ state: "pending" })
      .count<{ n: string }[]>({ n: "*" });
    return Number(out?.n) + Number(inb?.n) === 0 || undefined;
  }, "both of the bridge's queues empty");

const adminContract = new OpenApiContract(join(REPO_ROOT, "bridge", "openapi", "bridge-admin.yaml"));
const prune = async (now?: string) => {
  const res = await adminApi(org(), "bridge").fetch("/_medmesh/admin/v1/bridge/prune", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(now === undefined ? {} : { now }),
  });
  await adminContract.check("POST /_medmesh/admin/v1/bridge/prune", res.clone());
  const result = (await res.json()) as Record<string, number | boolean>;
  expect(result.ran).toBe(true);
  return result;
};

const body = (e: MatrixEvent) => e.getContent().body as string | undefined;

describe("bridge: what it keeps, and for how long", () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;
  const matrixEvents: string[] = [];

  it("after delivery both ways (text and a file each way) holds no plaintext and no file bytes", async () => {
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    roomId = await vendor.openConversation(
      {
        conversation_id: "c-life-1",
        kind: "direct",
        creator: "anna",
        members: ["anna", alice.userId],
        users: [{ id: "anna", display_name: "Anna Smit" }],
      },
      client,
    );
    await vendor.send({
      type: "message",
      conversation_id: "c-life-1",
      message_id: "m-v1",
      sender: "anna",
      text: TEXT.fromVendor,
    });
    await waitForRoomEvent(client, roomId, (e) => body(e) === TEXT.fromVendor, {
      description: "the vendor's text",
    });
    const { event_id: mine } = await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: TEXT.fromMatrix,
    });
    matrixEvents.push(mine);
    await vendor.delivered(
      (e) => e.type === "message" && e.text === TEXT.fromMatrix,
      "Alice's text at the vendor",
    );

    const up = await vendor.request("/_medmesh/interop/v1/media/doc-1", {
      method: "PUT",
      body: FILE.fromVendor,
      contentType: "application/pdf",
    });
    expect(up.status, await up.clone().text()).toBe(201);
    // Until the file is in Matrix, the bridge holds its bytes (and the search finds them).
    expect(await leftovers(knex(), [])).toEqual(["bridge_media.data: the file fromVendor"]);
    await vendor.send({
      type: "message",
      conversation_id: "c-life-1",
      message_id: "m-v2",
      sender: "anna",
      text: "report.pdf",
      file: {
        media_id: "doc-1",
        name: "report.pdf",
        content_type: "application/pdf",
        size: FILE.fromVendor.length,
      },
    });
    await waitForRoomEvent(client, roomId, (e) => e.getContent().msgtype === MsgType.File, {
      description: "the vendor's file",
    });

    const { ciphertext, file } = encryptAttachment(FILE.fromMatrix);
    const { content_uri } = await client.uploadContent(ciphertext, { type: "application/octet-stream" });
    const { event_id: picture } = await client.sendMessage(roomId, {
      msgtype: MsgType.Image,
      body: "wound.jpg",
      file: { url: content_uri, key: file.key, iv: file.iv, hashes: file.hashes, v: file.v },
      info: { mimetype: "image/jpeg", size: FILE.fromMatrix.length },
    });
    matrixEvents.push(picture);
    const image = await vendor.delivered(
      (e) => e.type === "message" && e.text === "wound.jpg",
      "Alice's image at the vendor",
    );
    // Both files stay fetchable for the vendor: from Matrix, decrypted, not from the bridge's store.
    for (const [mediaId, bytes] of [
      ["doc-1", FILE.fromVendor],
      [(image.file as { media_id: string }).media_id, FILE.fromMatrix],
    ] as const) {
      const res = await vendor.request(`/_medmesh/interop/v1/media/${mediaId}`, { method: "GET" });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes), mediaId).toBe(true);
    }

    await settled();
    expect(await leftovers(knex())).toEqual([]);
    expect(
      await knex()("bridge_outbound")
        .where((q) => {
          void q.whereNotNull("event").orWhereNotNull("encrypted");
        })
        .count<{ n: string }[]>({ n: "*" })
        .then((r) => Number(r[0]?.n)),
      "no delivered event keeps its content, clear or encrypted",
    ).toBe(0);
    expect(await knex()("bridge_media").where({ media_id: "doc-1" }).first()).toMatchObject({
      data: null,
      mxc: expect.stringMatching(/^mxc:\/\//) as unknown,
    });
  });

  it("keeps what is still needed: the message map for a later edit, a pending event's content", async () => {
    // The map from the vendor's message ID to its Matrix event stays until the message expires.
    expect(
      await knex()("bridge_messages").where({ conversation_id: "c-life-1", message_id: "m-v1" }).first(),
    ).toBeDefined();
    await vendor.send({
      type: "edit",
      conversation_id: "c-life-1",
      message_id: "m-v1",
      sender: "anna",
      text: TEXT.edit,
    });
    await waitForRoomEvent(
      client,
      roomId,
      (e) => (e.getContent()["m.new_content"] as { body?: string } | undefined)?.body === TEXT.edit,
      { description: "the vendor's edit of m-v1" },
    );

    // Undelivered (the vendor is down): its content waits in the queue, a prune leaves it there.
    vendor.down = true;
    const { event_id: waiting } = await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: TEXT.pending,
    });
    matrixEvents.push(waiting);
    await waitUntil(
      () =>
        knex()("bridge_outbound")
          .where({ idempotency_key: `mx-${waiting}`, state: "pending" })
          .where("attempts", ">", 0)
          .first(),
      "a failed delivery attempt",
    );
    await prune();
    expect(await leftovers(knex(), [TEXT.pending])).toEqual([`bridge_outbound.event: ${TEXT.pending}`]);
    vendor.down = false;
    await vendor.delivered(
      (e) => e.type === "message" && e.text === TEXT.pending,
      "the held-back text, delivered",
    );
    await settled();
    expect(await leftovers(knex())).toEqual([]);
  });

  it("keeps what could not be carried until the retention period, request records for the idempotency window", async () => {
    vendor.refuse = true;
    const { event_id: refused } = await client.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: TEXT.dead,
    });
    matrixEvents.push(refused);
    await waitForRoomEvent(client, roomId, (e) => /Not delivered to refmsg/.test(body(e) ?? ""), {
      description: "the notice that it was not delivered",
    });
    vendor.refuse = false;
    // An edit of a message Matrix never had: refused there, kept as a failed event.
    await vendor.send({
      type: "edit",
      conversation_id: "c-life-1",
      message_id: "m-nope",
      sender: "anna",
      text: TEXT.failed,
    });
    await vendor.delivered((e) => e.type === "undelivered", "the vendor told its edit was not carried");
    await settled();
    const kept = [`bridge_outbound.event: ${TEXT.dead}`, `interop_inbound.event: ${TEXT.failed}`];
    expect((await leftovers(knex())).sort()).toEqual(kept);

    const requests = () =>
      knex()("interop_requests")
        .count<{ n: string }[]>({ n: "*" })
        .then((r) => Number(r[0]?.n));
    expect(await requests()).toBeGreaterThan(0);
    await prune(later(1));
    expect(await requests(), "within the idempotency window (7 days)").toBeGreaterThan(0);
    expect(await prune(later(8))).toMatchObject({ outbound_rows: 0, inbound_rows: 0 });
    expect(await requests(), "past the idempotency window").toBe(0);
    expect((await leftovers(knex())).sort(), "within the retention period (30 days)").toEqual(kept);
  });

  it("once the retention period ends and the sweep runs, holds nothing of the conversation's messages", async () => {
    const sweep = await adminApi(org(), "policy-module").fetch("/_medmesh/admin/v1/retention/sweep", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ now: later(31) }),
    });
    expect(sweep.status).toBe(200);
    for (const messageId of ["m-v1", "m-v2", ...matrixEvents])
      await vendor.delivered(
        (e) => e.type === "delete" && e.message_id === messageId && e.reason === "retention",
        `the retention deletion of ${messageId} at the vendor`,
      );
    const audit = createAuditLog(knex());
    const deleted = await waitUntil(async () => {
      const records = await audit.find({ action: "bridge.retention_delete", object: roomId });
      const ids = records.flatMap((r) => (r.details as { event_ids?: string[] }).event_ids ?? []);
      return matrixEvents.every((id) => ids.includes(id)) ? records : undefined;
    }, "the bridge's retention deletions in the audit log");
    expect(deleted[0]?.details).toMatchObject({ vendor: vendor.id, conversation_id: "c-life-1" });
    await settled();
    // The redactions took the copies of what reached Matrix; the prune takes what never did.
    expect(await leftovers(knex())).toEqual([`interop_inbound.event: ${TEXT.failed}`]);
    const result = await prune(later(31));
    expect(result.inbound_rows).toBeGreaterThan(0);

    expect(await leftovers(knex())).toEqual([]);
    expect(
      await knex()("bridge_media").first(),
      "no file row: the messages that named them expired",
    ).toBeUndefined();
    expect(await knex()("bridge_messages").where({ conversation_id: "c-life-1" }).first()).toBeUndefined();
    expect(await knex()("interop_inbound").where({ state: "failed" }).first()).toBeUndefined();
    expect(await knex()("bridge_outbound").where({ state: "dead" }).first()).toBeUndefined();
    const metrics = await adminApi(org(), "bridge").metrics();
    const removed = (what: string, why: string) =>
      Number(
        new RegExp(`medmesh_bridge_store_removed_total\\{what="${what}",why="${why}"[^}]*\\} (\\d+)`).exec(
          metrics,
        )?.[1],
      );
    expect(removed("message_ids", "retention_redaction")).toBe(2);
    expect(removed("media_rows", "retention_redaction")).toBe(2);
    expect(removed("media_bytes", "uploaded")).toBe(1);
    expect(removed("requests", "idempotency_window")).toBeGreaterThan(0);
  });
});
