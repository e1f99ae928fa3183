import { spawn } from "node:child_process";
import { generateKeyPairSync, randomUUID, type KeyObject } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@medmesh/common";
import express from "express";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MEDIA_PATH, REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest, verifyRequest } from "../interop/signatures.ts";
import { startReferenceVendor, type ReferenceVendorOptions, type RunningReferenceVendor } from "./index.ts";

const log = createLogger("vendor-test", "silent");
const vendorKeys = generateKeyPairSync("ed25519");
const medmeshKeys = generateKeyPairSync("ed25519");
const otherKeys = generateKeyPairSync("ed25519");

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Attempt {
  method: string;
  path: string;
  key: string;
  body: Buffer;
  contentType: string;
  nonce: string | undefined;
  verified: boolean;
  reason?: string;
  status: number;
}

/**
 * MedMesh's side of the interop API, small: checks the vendor's signatures with `verifyRequest`,
 * refuses reused nonces, answers each new Idempotency-Key 503 `failures` times before accepting it,
 * stores uploads and serves files for the vendor to download.
 */
class FakeMedMesh {
  readonly attempts: Attempt[] = [];
  readonly uploads = new Map<string, { data: Buffer; contentType: string }>();
  readonly served = new Map<string, { data: Buffer; contentType: string }>();
  readonly downloads: Attempt[] = [];
  failures = 2;
  down = false;
  refuse: (event: Record<string, unknown>) => boolean = () => false;
  url = "";
  private readonly nonces = new Set<string>();
  private readonly seen = new Map<string, number>();
  private server: Server | undefined;

  async start(port = 0): Promise<void> {
    const app = express();
    app.use(express.raw({ type: () => true, limit: "20mb" }));
    app.use((req, res) => {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const get = req.method === "GET";
      const v = verifyRequest(
        {
          method: req.method,
          url: `${this.url}${req.originalUrl}`,
          headers: req.headers as Record<string, string>,
          body,
        },
        {
          key: (id) => (id === "refmsg-1" ? vendorKeys.publicKey : undefined),
          required: get ? ["@method", "@target-uri"] : REQUIRED_COMPONENTS,
          maxSkewSeconds: 300,
        },
      );
      const nonce = v.ok ? v.nonce : undefined;
      const verified = v.ok && nonce !== undefined && !this.nonces.has(nonce);
      if (nonce) this.nonces.add(nonce);
      const key = String(req.headers["idempotency-key"] ?? "");
      const attempt: Attempt = {
        method: req.method,
        path: req.path,
        key,
        body,
        contentType: String(req.headers["content-type"]),
        nonce,
        verified,
        ...(v.ok ? {} : { reason: v.reason }),
        status: 0,
      };
      const answer = (status: number, json: unknown, raw?: { data: Buffer; contentType: string }) => {
        attempt.status = status;
        if (raw) res.status(status).type(raw.contentType).send(raw.data);
        else res.status(status).json(json);
      };
      if (get) {
        this.downloads.push(attempt);
        const file = this.served.get(req.path.slice(MEDIA_PATH.length + 1));
        if (!verified) {
          answer(401, { errcode: "M_UNAUTHORIZED", error: v.ok ? "nonce" : v.reason });
          return;
        }
        if (!file) {
          answer(404, { errcode: "M_NOT_FOUND", error: "no such file" });
          return;
        }
        answer(200, undefined, file);
        return;
      }
      this.attempts.push(attempt);
      if (this.down) {
        answer(503, { errcode: "M_UNAVAILABLE", error: "down" });
        return;
      }
      if (!verified) {
        answer(401, { errcode: "M_UNAUTHORIZED", error: v.ok ? "nonce" : v.reason });
        return;
      }
      const n = (this.seen.get(key) ?? 0) + 1;
      this.seen.set(key, n);
      if (n <= this.failures) {
        answer(503, { errcode: "M_UNAVAILABLE", error: "try again" });
        return;
      }
      if (req.method === "PUT") {
        this.uploads.set(req.path.slice(MEDIA_PATH.length + 1), {
          data: body,
          contentType: attempt.contentType,
        });
        answer(201, { media_id: req.path.slice(MEDIA_PATH.length + 1) });
        return;
      }
      const event = JSON.parse(body.toString()) as Record<string, unknown>;
      if (this.refuse(event)) {
        answer(400, { errcode: "M_BAD_JSON", error: "refused by the test" });
        return;
      }
      answer(202, { accepted: true, event_seq: this.attempts.length });
    });
    this.server = createServer(app);
    const server = this.server;
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  }

  /** The events MedMesh accepted, in the order it accepted them. */
  accepted(): Record<string, unknown>[] {
    return this.attempts
      .filter((a) => a.status === 202)
      .map((a) => JSON.parse(a.body.toString()) as Record<string, unknown>);
  }

  attemptsOf(key: string): Attempt[] {
    return this.attempts.filter((a) => a.key === key);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((r) => {
      server.close(() => {
        r();
      });
      server.closeAllConnections();
    });
  }
}

const medmesh = new FakeMedMesh();
beforeAll(() => medmesh.start());
afterAll(() => medmesh.stop());

const running: RunningReferenceVendor[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((v) => v.stop()));
  medmesh.failures = 2;
  medmesh.down = false;
  medmesh.refuse = () => false;
});

const newDataFile = () => join(mkdtempSync(join(tmpdir(), "medmesh-vendor-")), "vendor.sqlite");

async function startVendor(o: Partial<ReferenceVendorOptions> = {}) {
  const vendor = await startReferenceVendor({
    dataFile: newDataFile(),
    listen: { host: "127.0.0.1", port: 0 },
    vendorId: "refmsg",
    keyId: "refmsg-1",
    privateKey: vendorKeys.privateKey,
    medmesh: {
      url: medmesh.url,
      keyId: "medmesh-1",
      publicKey: medmeshKeys.publicKey.export({ format: "jwk" }),
    },
    log,
    ...o,
  });
  running.push(vendor);
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${vendor.url}/api${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
    const type = res.headers.get("content-type") ?? "";
    return {
      status: res.status,
      body: (type.includes("json") ? await res.json() : Buffer.from(await res.arrayBuffer())) as Record<
        string,
        unknown
      >,
    };
  };
  return { vendor, api };
}

/** A webhook delivery as MedMesh makes it (or, with the options, as it must not be made). */
async function deliver(
  vendor: RunningReferenceVendor,
  event: unknown,
  o: {
    key?: string;
    nonce?: string;
    signWith?: KeyObject;
    sign?: boolean;
    raw?: string;
    sendBody?: string;
    created?: number;
  } = {},
) {
  const bytes = Buffer.from(o.raw ?? JSON.stringify(event));
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "content-digest": contentDigest(bytes),
    "idempotency-key": o.key ?? randomUUID(),
  };
  if (o.sign !== false)
    Object.assign(
      headers,
      signRequest(
        { method: "POST", url: vendor.webhookUrl, headers, body: bytes },
        {
          keyId: "medmesh-1",
          privateKey: o.signWith ?? medmeshKeys.privateKey,
          components: REQUIRED_COMPONENTS,
          nonce: o.nonce ?? randomUUID(),
          ...(o.created ? { created: o.created } : {}),
        },
      ),
    );
  const res = await fetch(vendor.webhookUrl, { method: "POST", headers, body: o.sendBody ?? bytes });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const matrixCreate = (room: string) => ({
  type: "conversation.create",
  conversation_id: room,
  kind: "direct",
  creator: "@alice:localhost:8481",
  members: ["@alice:localhost:8481", "anna"],
  users: [{ id: "@alice:localhost:8481", display_name: "Alice" }],
});
const matrixMessage = (room: string, text = "hello from Matrix") => ({
  type: "message",
  conversation_id: room,
  message_id: `$${randomUUID()}`,
  sender: "@alice:localhost:8481",
  text,
});

async function seedConversation(api: Awaited<ReturnType<typeof startVendor>>["api"]) {
  expect((await api("POST", "/users", { id: "anna", display_name: "Anna Smit" })).status).toBe(201);
  expect(
    (
      await api("POST", "/users", {
        id: "bert",
        display_name: "Bert de Vries",
        registration: { registry: "BIG", number: "19012345601" },
      })
    ).status,
  ).toBe(201);
  const conv = await api("POST", "/conversations", {
    kind: "group",
    name: "Ward 3",
    creator: "anna",
    members: ["bert", "@alice:localhost:8481"],
  });
  expect(conv.status).toBe(201);
  return String(conv.body.conversation_id);
}

describe("reference vendor → MedMesh: the outbox", () => {
  it("delivers in order, retrying 503 with the same Idempotency-Key and body, each attempt signed anew", async () => {
    const { api } = await startVendor();
    const before = medmesh.attempts.length;
    const conv = await seedConversation(api);
    const m1 = await api("POST", `/conversations/${conv}/messages`, { sender: "anna", text: "first" });
    const m2 = await api("POST", `/conversations/${conv}/messages`, {
      sender: "bert",
      text: "second",
      html: "<b>second</b>",
      reply_to: m1.body.message_id,
    });
    const r = await api("POST", `/conversations/${conv}/reactions`, {
      sender: "anna",
      message_id: m2.body.message_id,
      key: "👍",
    });
    expect([m1.status, m2.status, r.status]).toEqual([201, 201, 201]);
    await waitFor("four deliveries", async () => (await api("GET", "/outbox")).body.delivered === 4);
    expect((await api("GET", "/outbox")).body).toEqual({ pending: 0, delivered: 4, failed: 0 });

    const attempts = medmesh.attempts.slice(before);
    const keys = [...new Set(attempts.map((a) => a.key))];
    // Strictly in order: every attempt of one event before the first of the next.
    expect(attempts.map((a) => a.key)).toEqual(keys.flatMap((k) => [k, k, k]));
    expect(attempts.map((a) => a.status)).toEqual(keys.flatMap(() => [503, 503, 202]));
    for (const k of keys) {
      const [first, ...retries] = medmesh.attemptsOf(k);
      for (const retry of retries) expect(retry.body.equals(first!.body)).toBe(true);
    }
    expect(attempts.every((a) => a.verified)).toBe(true);
    expect(new Set(attempts.map((a) => a.nonce)).size).toBe(attempts.length);
    const accepted = medmesh.accepted().slice(-4);
    expect(accepted.map((e) => e.type)).toEqual(["conversation.create", "message", "message", "reaction"]);
    expect(accepted[0]).toMatchObject({
      conversation_id: conv,
      kind: "group",
      name: "Ward 3",
      creator: "anna",
      members: ["anna", "bert", "@alice:localhost:8481"],
      users: [
        { id: "anna", display_name: "Anna Smit" },
        {
          id: "bert",
          display_name: "Bert de Vries",
          registration: { registry: "BIG", number: "19012345601" },
        },
      ],
    });
    expect(accepted[2]).toMatchObject({
      text: "second",
      html: "<b>second</b>",
      reply_to: m1.body.message_id,
    });
    expect(accepted[3]).toMatchObject({ reaction_id: r.body.reaction_id, key: "👍" });

    const events = (await api("GET", `/conversations/${conv}/events`)).body.events as {
      seq: number;
      direction: string;
      event: { type: string };
    }[];
    expect(events.map((e) => [e.direction, e.event.type])).toEqual([
      ["out", "conversation.create"],
      ["out", "message"],
      ["out", "message"],
      ["out", "reaction"],
    ]);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
  });

  it("fails an event MedMesh refuses with a 4xx, logs why, and carries on with the conversation", async () => {
    medmesh.failures = 0;
    medmesh.refuse = (e) => e.text === "please refuse";
    const { api } = await startVendor();
    const conv = await seedConversation(api);
    await api("POST", `/conversations/${conv}/messages`, { sender: "anna", text: "please refuse" });
    await api("POST", `/conversations/${conv}/messages`, { sender: "anna", text: "after" });
    await waitFor("the queue to drain", async () => (await api("GET", "/outbox")).body.pending === 0);
    expect((await api("GET", "/outbox")).body).toEqual({ pending: 0, delivered: 2, failed: 1 });
    const failed = (await api("GET", "/outbox/items?status=failed")).body.items as Record<string, unknown>[];
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ last_status: 400, description: `message in ${conv}` });
    expect(String(failed[0]!.last_error)).toContain("400 M_BAD_JSON: refused by the test");
    expect(medmesh.accepted().at(-1)).toMatchObject({ text: "after" });
  });

  it("refuses API calls that make no sense, naming the field", async () => {
    const { api } = await startVendor();
    const conv = await seedConversation(api);
    expect(
      await api("POST", "/conversations", { kind: "direct", creator: "nobody", members: ["anna"] }),
    ).toMatchObject({
      status: 404,
      body: { errcode: "M_NOT_FOUND", error: "creator: no user nobody (create it first)" },
    });
    expect(await api("POST", `/conversations/${conv}/messages`, { sender: "anna" })).toMatchObject({
      status: 400,
      body: { errcode: "M_BAD_JSON" },
    });
    expect(
      (await api("POST", `/conversations/${conv}/edits`, { sender: "anna", message_id: "nope", text: "x" }))
        .status,
    ).toBe(404);
    expect((await api("POST", "/conversations/none/messages", { sender: "anna", text: "x" })).status).toBe(
      404,
    );
    expect((await api("POST", "/users", { id: "@evil:example.org", display_name: "x" })).status).toBe(400);
  });
});

describe("MedMesh → reference vendor: the webhook", () => {
  it("accepts MedMesh's signed events, creating a Matrix-side conversation from its conversation.create", async () => {
    const { vendor, api } = await startVendor();
    const room = "!portal1:localhost:8481";
    expect(await deliver(vendor, matrixCreate(room))).toEqual({ status: 200, body: {} });
    const msg = matrixMessage(room);
    expect(await deliver(vendor, msg)).toEqual({ status: 200, body: {} });
    const conversations = (await api("GET", "/conversations")).body.conversations as Record<
      string,
      unknown
    >[];
    expect(conversations).toContainEqual(
      expect.objectContaining({ conversation_id: room, origin: "medmesh", kind: "direct" }),
    );
    const events = (await api("GET", `/conversations/${encodeURIComponent(room)}/events`)).body.events as {
      direction: string;
      event: Record<string, unknown>;
    }[];
    expect(events.map((e) => [e.direction, e.event.type])).toEqual([
      ["in", "conversation.create"],
      ["in", "message"],
    ]);
    expect(events[1]!.event).toEqual(msg);
    // A reply from the vendor's side goes into the same conversation.
    const reply = await api("POST", `/conversations/${encodeURIComponent(room)}/messages`, {
      sender: "anna",
      text: "hi Alice",
      reply_to: msg.message_id,
    });
    expect(reply).toMatchObject({ status: 404, body: { error: "sender: no user anna (create it first)" } });
    await api("POST", "/users", { id: "anna", display_name: "Anna" });
    expect(
      (
        await api("POST", `/conversations/${encodeURIComponent(room)}/messages`, {
          sender: "anna",
          text: "hi",
        })
      ).status,
    ).toBe(201);
  });

  it("refuses unsigned, wrongly signed, altered, stale and replayed requests with 401, malformed ones with 400", async () => {
    const { vendor, api } = await startVendor();
    const room = "!portal2:localhost:8481";
    await deliver(vendor, matrixCreate(room));
    const nonce = randomUUID();
    expect((await deliver(vendor, matrixMessage(room), { nonce })).status).toBe(200);
    const count = async () =>
      ((await api("GET", `/conversations/${encodeURIComponent(room)}/events`)).body.events as unknown[])
        .length;
    const before = await count();
    const altered = JSON.stringify(matrixMessage(room, "what MedMesh signed"));
    const cases: [string, Awaited<ReturnType<typeof deliver>>, number, string][] = [
      ["unsigned", await deliver(vendor, matrixMessage(room), { sign: false }), 401, "M_UNAUTHORIZED"],
      [
        "another key",
        await deliver(vendor, matrixMessage(room), { signWith: otherKeys.privateKey }),
        401,
        "M_UNAUTHORIZED",
      ],
      [
        "altered body",
        await deliver(vendor, undefined, { raw: altered, sendBody: altered.replace("signed", "sent") }),
        401,
        "M_UNAUTHORIZED",
      ],
      [
        "stale",
        await deliver(vendor, matrixMessage(room), { created: Math.floor(Date.now() / 1000) - 3600 }),
        401,
        "M_UNAUTHORIZED",
      ],
      ["replayed nonce", await deliver(vendor, matrixMessage(room), { nonce }), 401, "M_UNAUTHORIZED"],
      ["not JSON", await deliver(vendor, undefined, { raw: "{nope" }), 400, "M_NOT_JSON"],
      ["not an event", await deliver(vendor, { type: "message", conversation_id: room }), 400, "M_BAD_JSON"],
      [
        "unknown conversation",
        await deliver(vendor, matrixMessage("!unknown:localhost:8481")),
        404,
        "M_NOT_FOUND",
      ],
      ["created twice", await deliver(vendor, matrixCreate(room)), 403, "M_FORBIDDEN"],
    ];
    for (const [what, res, status, errcode] of cases) {
      expect({ what, status: res.status, errcode: res.body.errcode }).toEqual({ what, status, errcode });
      expect(typeof res.body.error, what).toBe("string");
    }
    expect(cases[2]![1].body.error).toContain("Content-Digest does not match the body");
    expect(await count()).toBe(before);
  });

  it("applies a retry (same Idempotency-Key and body, new signature) once, and refuses the key for another body", async () => {
    const { vendor, api } = await startVendor();
    const room = "!portal3:localhost:8481";
    await deliver(vendor, matrixCreate(room));
    const msg = matrixMessage(room);
    const key = randomUUID();
    expect(await deliver(vendor, msg, { key })).toEqual({ status: 200, body: {} });
    expect(await deliver(vendor, msg, { key })).toEqual({ status: 200, body: {} });
    expect(await api("POST", "/conformance/trigger", { action: "count", idempotency_key: key })).toEqual({
      status: 200,
      body: { applied: 1 },
    });
    expect(await deliver(vendor, matrixMessage(room, "another"), { key })).toMatchObject({
      status: 409,
      body: { errcode: "ORG.MEDMESH.IDEMPOTENCY_CONFLICT" },
    });
    const messages = (await api("GET", `/conversations/${encodeURIComponent(room)}/messages`)).body
      .messages as unknown[];
    expect(messages).toHaveLength(1);
  });

  it("applies edits, reactions, deletions of messages and of reactions", async () => {
    const { vendor, api } = await startVendor();
    const room = "!portal4:localhost:8481";
    await deliver(vendor, matrixCreate(room));
    const msg = matrixMessage(room);
    await deliver(vendor, msg);
    const base = { conversation_id: room, message_id: msg.message_id, sender: "@alice:localhost:8481" };
    await deliver(vendor, { ...base, type: "edit", text: "edited" });
    await deliver(vendor, { ...base, type: "reaction", reaction_id: "$r1", key: "❤" });
    await deliver(vendor, { ...base, type: "reaction", reaction_id: "$r2", key: "👍" });
    await deliver(vendor, { ...base, type: "delete", message_id: "$r1" });
    const path = `/conversations/${encodeURIComponent(room)}/messages`;
    expect((await api("GET", path)).body.messages).toEqual([
      expect.objectContaining({
        text: "edited",
        edited: true,
        deleted: false,
        reactions: [{ reaction_id: "$r2", sender: base.sender, key: "👍" }],
      }),
    ]);
    await deliver(vendor, { ...base, type: "delete" });
    expect((await api("GET", path)).body.messages).toEqual([
      expect.objectContaining({ text: null, deleted: true }),
    ]);
  });

  it("switches single checks off when told to be broken", async () => {
    const { vendor, api } = await startVendor({
      broken: { accept_unsigned: true, no_dedup: true, accept_replay: true },
    });
    const room = "!portal5:localhost:8481";
    expect((await deliver(vendor, matrixCreate(room), { sign: false })).status).toBe(200);
    expect((await deliver(vendor, matrixMessage(room), { signWith: otherKeys.privateKey })).status).toBe(401);
    const msg = matrixMessage(room);
    const key = randomUUID();
    const nonce = randomUUID();
    expect((await deliver(vendor, msg, { key, nonce })).status).toBe(200);
    expect((await deliver(vendor, msg, { key, nonce })).status).toBe(200);
    expect(
      (await api("POST", "/conformance/trigger", { action: "count", idempotency_key: key })).body,
    ).toEqual({
      applied: 2,
    });
  });
});

describe("files", () => {
  it("uploads a file with a signed PUT before the message that names it", async () => {
    medmesh.failures = 1;
    const { api } = await startVendor();
    const conv = await seedConversation(api);
    const data = Buffer.from("%PDF-1.7 a discharge letter");
    const sent = await api("POST", `/conversations/${conv}/files`, {
      sender: "anna",
      name: "letter.pdf",
      content_type: "application/pdf",
      data_base64: data.toString("base64"),
    });
    expect(sent.status).toBe(201);
    const mediaId = String(sent.body.media_id);
    await waitFor("the file message", () =>
      medmesh.accepted().find((e) => e.message_id === sent.body.message_id),
    );
    const upload = medmesh.attemptsOf(mediaId);
    expect(upload.map((a) => [a.method, a.status])).toEqual([
      ["PUT", 503],
      ["PUT", 201],
    ]);
    expect(upload.every((a) => a.verified && a.contentType === "application/pdf")).toBe(true);
    expect(medmesh.uploads.get(mediaId)?.data.equals(data)).toBe(true);
    const putDone = medmesh.attempts.indexOf(upload[1]!);
    const message = medmesh.attempts.findIndex((a) =>
      a.body.includes(Buffer.from(String(sent.body.message_id))),
    );
    expect(message).toBeGreaterThan(putDone);
    expect(medmesh.accepted().find((e) => e.message_id === sent.body.message_id)).toMatchObject({
      text: "letter.pdf",
      file: { media_id: mediaId, name: "letter.pdf", content_type: "application/pdf", size: data.length },
    });
  });

  it("downloads a file MedMesh announces, with a signed GET, and serves it", async () => {
    const { vendor, api } = await startVendor();
    const room = "!portal6:localhost:8481";
    await deliver(vendor, matrixCreate(room));
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4]);
    const mediaId = randomUUID();
    medmesh.served.set(mediaId, { data, contentType: "image/png" });
    const before = medmesh.downloads.length;
    await deliver(vendor, {
      ...matrixMessage(room, "scan.png"),
      file: { media_id: mediaId, name: "scan.png", content_type: "image/png", size: data.length },
    });
    const file = await waitFor("the download", async () => {
      const r = await api("GET", `/files/${mediaId}`);
      return r.status === 200 ? r : undefined;
    });
    expect(Buffer.from(file.body as unknown as Buffer).equals(data)).toBe(true);
    const gets = medmesh.downloads.slice(before);
    expect(gets).toHaveLength(1);
    expect(gets[0]).toMatchObject({ method: "GET", verified: true, status: 200 });
    expect((await api("GET", "/files/unknown")).status).toBe(404);
  });
});

describe("restarts", () => {
  it("keeps everything across a stop and start on the same file; the outbox carries on in order", async () => {
    const dataFile = newDataFile();
    const first = await startVendor({ dataFile });
    const room = "!portal7:localhost:8481";
    await deliver(first.vendor, matrixCreate(room));
    const msg = matrixMessage(room);
    const key = randomUUID();
    const nonce = randomUUID();
    await deliver(first.vendor, msg, { key, nonce });
    medmesh.down = true;
    const before = medmesh.attempts.length;
    const conv = await seedConversation(first.api);
    for (const text of ["one", "two", "three"])
      await first.api("POST", `/conversations/${conv}/messages`, { sender: "anna", text });
    await waitFor("a failed attempt", () => medmesh.attempts.length > before);
    const triedKey = medmesh.attempts[before]!.key;
    await first.vendor.stop();
    running.splice(running.indexOf(first.vendor), 1);

    medmesh.down = false;
    medmesh.failures = 0;
    const second = await startVendor({ dataFile });
    await waitFor(
      "the outbox to drain",
      async () => (await second.api("GET", "/outbox")).body.delivered === 4,
    );
    const accepted = medmesh.accepted().slice(-4);
    expect(accepted.map((e) => (e.type === "message" ? e.text : e.type))).toEqual([
      "conversation.create",
      "one",
      "two",
      "three",
    ]);
    // What was attempted before the restart went again under the same key.
    expect(medmesh.attemptsOf(triedKey).at(-1)?.status).toBe(202);
    // What was received before: still there, its nonce still refused, its key still deduplicated.
    expect((await deliver(second.vendor, msg, { key, nonce })).status).toBe(401);
    expect((await deliver(second.vendor, msg, { key })).status).toBe(200);
    expect(
      (await second.api("POST", "/conformance/trigger", { action: "count", idempotency_key: key })).body,
    ).toEqual({
      applied: 1,
    });
    expect((await second.api("GET", "/conversations")).body.conversations).toHaveLength(2);
  });

  it("survives kill -9 of main.ts (config file, YAML) and refuses a bad config naming the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "medmesh-vendor-main-"));
    writeFileSync(join(dir, "vendor.pem"), vendorKeys.privateKey.export({ format: "pem", type: "pkcs8" }));
    writeFileSync(join(dir, "medmesh.jwk"), JSON.stringify(medmeshKeys.publicKey.export({ format: "jwk" })));
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const config = (extra = "") =>
      [
        "data_file: vendor.sqlite",
        `listen: { host: 127.0.0.1, port: ${String(port)} }`,
        "vendor_id: refmsg",
        "key_id: refmsg-1",
        "private_key_file: vendor.pem",
        `medmesh: { url: "${medmesh.url}", key_id: medmesh-1, public_key_file: medmesh.jwk }`,
        "log_level: warn",
        extra,
      ].join("\n");
    writeFileSync(join(dir, "vendor.yaml"), config());
    writeFileSync(join(dir, "bad.yaml"), config("broken: { accept_unsigned: maybe }"));
    const main = join(import.meta.dirname, "main.ts");
    const run = (file: string) => {
      const child = spawn(process.execPath, [main, join(dir, file)], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((r) => {
        child.on("exit", (code) => {
          r(code);
        });
      });
      return { child, output: () => out, exited };
    };

    const bad = run("bad.yaml");
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain("broken.accept_unsigned");

    const url = `http://127.0.0.1:${String(port)}`;
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${url}/api${path}`, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const first = run("vendor.yaml");
    await waitFor("main.ts to listen", () => first.output().includes("reference vendor:"));
    medmesh.down = true;
    const before = medmesh.attempts.length;
    const conv = await seedConversation(api);
    await api("POST", `/conversations/${conv}/messages`, { sender: "anna", text: "before the crash" });
    await waitFor("an attempt", () => medmesh.attempts.length > before);
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe(null);

    medmesh.down = false;
    medmesh.failures = 0;
    const second = run("vendor.yaml");
    try {
      await waitFor("main.ts to listen again", () => second.output().includes("reference vendor:"));
      await waitFor("the outbox to drain", async () => (await api("GET", "/outbox")).body.delivered === 2);
      expect(
        medmesh
          .accepted()
          .slice(-2)
          .map((e) => e.type),
      ).toEqual(["conversation.create", "message"]);
      expect(medmesh.accepted().at(-1)).toMatchObject({ text: "before the crash" });
    } finally {
      second.child.kill("SIGTERM");
      expect(await second.exited).toBe(0);
    }
  });
});
