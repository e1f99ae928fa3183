import { existsSync } from "node:fs";
import { join } from "node:path";
import type { RunningOrganisation } from "@medmesh/deploy";
import { createLogger, createSynapseAdmin, createAuditLog, asUser, electedLeader } from "@medmesh/common";
import type { MatrixClient } from "matrix-js-sdk";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import {
  createSweeper,
  retentionIndex,
  RetentionConfigSchema,
  SWEEP_JOB,
} from "../../policy-module/src/retention/index.ts";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import {
  adminApi,
  waitForMembership,
  waitUntil,
  withSynapseDb,
  type TestNetwork,
  type TestUser,
} from "../harness/index.ts";

/**
 * Retention end to end: run on two single-process organisations (retention.test.ts) and with the
 * first one on Synapse workers (retention-workers.test.ts). Synapse's stores are read through
 * withSynapseDb (SQLite or PostgreSQL).
 */
export function retentionSuite(net: () => TestNetwork, title = "30-day retention"): void {
  const DAY = 86_400_000;
  const org = (i: number): RunningOrganisation => net().orgs[i]!;
  const policy = (o: RunningOrganisation) => o.services.find((s) => s.name === "policy-module")!;
  const enc = encodeURIComponent;

  /** Sends as the room-admin bot with an origin timestamp in the past (the appservice `ts` parameter). */
  async function sendOld(
    o: RunningOrganisation,
    roomId: string,
    type: string,
    content: object,
    ageMs: number,
  ) {
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

  const admin = (o: RunningOrganisation, method: string, path: string, body?: unknown) =>
    adminApi(o, "policy-module").json(method, path, body);
  const status = async (o: RunningOrganisation) =>
    (await admin(o, "GET", "/_medmesh/admin/v1/retention/status")) as {
      indexed: number;
      waiting: number;
      kept: number;
    };
  const policyOf = async (client: MatrixClient, roomId: string): Promise<number | undefined> =>
    (
      (await client.getStateEvent(roomId, "m.room.retention", "").catch(() => ({}))) as {
        max_lifetime?: number;
      }
    ).max_lifetime;
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

  /** Whether any row of Synapse's own event store still holds the text. */
  const inSynapseDb = (o: RunningOrganisation, text: string): Promise<boolean> =>
    withSynapseDb(o, async (db) => {
      const [row] = await db.all<{ n: number | string }>(
        "SELECT count(*) AS n FROM event_json WHERE json LIKE ?",
        [`%${text}%`],
      );
      return Number(row?.n ?? 0) > 0;
    });

  describe(title, () => {
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
      await waitUntil(async () => {
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
      await waitUntil(async () => {
        const s = await status(a);
        return s.indexed >= 5 && s.kept === 1;
      }, "the appservice indexed the events and the pin");

      const result = await sweep(a);
      expect(result).toMatchObject({ ran: true, redacted: 3, failed: 0, purged_rooms: 1, media_deleted: 1 });
      for (const user of [ann, bram])
        for (const key of ["plain", "encrypted", "image"])
          await waitUntil(
            async () => (await seen(user, roomId, ids[key]!)) !== "content",
            `${user.userId} no longer sees ${key}`,
          );
      expect(await seen(ann, roomId, ids.kept)).toBe("content");
      // (B may still be receiving the newer message over federation.)
      await waitUntil(
        async () => (await seen(bram, roomId, ids.fresh!)) === "content",
        "B sees the newer message",
      );
      expect(await inSynapseDb(a, "old-plain-7f3a")).toBe(false);
      expect(await inSynapseDb(a, "old-cipher-9b1c")).toBe(false);
      expect(await inSynapseDb(a, "old-kept-4d2e")).toBe(true);
      expect(existsSync(mediaFile)).toBe(false);

      // A second sweep finds nothing to do (idempotent).
      expect(await sweep(a)).toMatchObject({ ran: true, redacted: 0, already_redacted: 0, failed: 0 });

      // Un-pinning ends the keep: the next sweep removes it.
      await annClient.sendStateEvent(roomId, "m.room.pinned_events" as never, { pinned: [] } as never, "");
      await waitUntil(async () => (await status(a)).kept === 0, "the keep ended");
      expect(await sweep(a)).toMatchObject({ redacted: 1 });
      expect(await seen(bram, roomId, ids.kept)).not.toBe("content");

      // B's MedMesh cannot act in A's room (no member there may make its bot admin): it leaves the
      // room to A's MedMesh, whose redactions reach B, rather than failing on it every sweep.
      expect(await admin(org(1), "POST", "/_medmesh/admin/v1/retention/backfill")).toMatchObject({
        rooms: 0,
        left_to_home_server: 1,
      });
      expect(await sweep(org(1))).toMatchObject({ ran: true, redacted: 0, failed: 0 });
      expect(await seen(ann, roomId, ids.fresh)).toBe("content");
    });

    it("ends a keep at the organisation's maximum keep period", async () => {
      const a = org(0);
      const annClient = await net().client(ann);
      const id = await sendOld(
        a,
        roomId,
        "m.room.message",
        { msgtype: "m.text", body: "kept-long" },
        40 * DAY,
      );
      await annClient.sendStateEvent(roomId, "m.room.pinned_events" as never, { pinned: [id] } as never, "");
      await waitUntil(async () => (await status(a)).kept === 1, "pinned");
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
      const roomWithPolicy = async (): Promise<string> => {
        const { room_id } = await annClient.createRoom({});
        await waitUntil(
          async () => (await policyOf(annClient, room_id)) === 30 * DAY,
          "the bot set the policy",
        );
        return room_id;
      };
      const [short, long] = [await roomWithPolicy(), await roomWithPolicy()];
      await annClient.sendStateEvent(
        short,
        "m.room.retention" as never,
        { max_lifetime: 5 * DAY } as never,
        "",
      );
      await annClient.sendStateEvent(
        long,
        "m.room.retention" as never,
        { max_lifetime: 60 * DAY } as never,
        "",
      );
      await waitUntil(
        async () => (await policyOf(annClient, long)) === 30 * DAY,
        "the bot set the longer period back to 30 days",
      );
      expect(await policyOf(annClient, short)).toBe(5 * DAY);

      const inShort = await sendOld(
        a,
        short,
        "m.room.message",
        { msgtype: "m.text", body: "ten-days" },
        10 * DAY,
      );
      const inLong = await sendOld(
        a,
        long,
        "m.room.message",
        { msgtype: "m.text", body: "ten-days" },
        10 * DAY,
      );
      await waitUntil(async () => (await status(a)).waiting >= 2, "indexed");
      expect(await sweep(a)).toMatchObject({ redacted: 1 });
      expect(await seen(ann, short, inShort)).not.toBe("content");
      expect(await seen(ann, long, inLong)).toBe("content");
    });

    it("finishes a sweep that crashed mid-way: nothing missed, nothing redacted twice", async () => {
      const a = org(0);
      const svc = policy(a);
      const expired = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          sendOld(a, roomId, "m.room.message", { msgtype: "m.text", body: `burst ${String(i)}` }, 35 * DAY),
        ),
      );
      await waitUntil(async () => (await status(a)).waiting >= 20, "the burst is indexed");

      // A second instance sweeps the same store and homeserver and dies right after its fifth
      // redaction went out — before recording it (the worst moment): it never returns. It leads the
      // sweep: its lease taken over from the service (as if the service's had run out).
      await svc.store
        .knex("leases")
        .where({ name: SWEEP_JOB })
        .update({ holder: "crashing", expires_at: new Date(Date.now() + 600_000) });
      const leader = await electedLeader(
        { leases: svc.store.leases, knex: svc.store.knex },
        SWEEP_JOB,
        createLogger("crashing-sweeper", "silent"),
        "crashing",
      );
      const counted = async (outcome: string) =>
        ((await svc.metrics.getSingleMetric("medmesh_retention_events_total")?.get())?.values ?? []).find(
          (v) => v.labels.outcome === outcome,
        )?.value ?? 0;
      const [redactedBefore, alreadyBefore] = [await counted("redacted"), await counted("already_redacted")];
      let sent = 0;
      const crashing = createSweeper({
        config: RetentionConfigSchema.parse({}),
        index: retentionIndex(svc.store.knex),
        bot: asUser(a.synapseUrl, svc.registration.as_token, `@medmesh:${a.serverName}`),
        botUserId: `@medmesh:${a.serverName}`,
        admin: createSynapseAdmin({ url: a.synapseUrl, registrationSharedSecret: a.registrationSecret }),
        serverName: a.serverName,
        leader,
        knex: svc.store.knex,
        documents: svc.store.documents,
        audit: createAuditLog(svc.store.knex),
        log: createLogger("crashing-sweeper", "silent"),
        metrics: new Registry(),
        afterRedaction: () => (++sent === 5 ? new Promise<never>(() => undefined) : undefined),
      });
      void crashing.run();
      await waitUntil(() => sent === 5, "the crashing sweep sent five redactions");
      // The service stands by (once its renewal found the lease taken): its sweep does not run.
      await waitUntil(
        async () =>
          new RegExp(`^medmesh_leader\\{[^}]*job="${SWEEP_JOB}"[^}]*\\} 0$`, "m").test(
            await svc.metrics.getSingleMetricAsString("medmesh_leader"),
          ),
        "the service noticed it no longer leads the sweep",
        60_000,
      );
      expect(await sweep(a)).toMatchObject({ ran: false });
      // The crashing instance is gone: its lease runs out (here: at once). The service's next
      // renewal elects it, and it continues the interrupted sweep by itself.
      await leader.stop();
      const unmarked = async () =>
        Number(
          (
            await svc.store
              .knex("retention_events")
              .whereIn("event_id", expired)
              .whereNull("redacted_at")
              .count<{ n: string }[]>({ n: "*" })
          )[0]?.n,
        );
      await waitUntil(async () => (await unmarked()) === 0, "the service finished the sweep", 60_000);
      // The five the crashed batch had sent (journalled, never checkpointed) found redacted, not sent again.
      expect(await counted("redacted")).toBe(redactedBefore + 15);
      expect(await counted("already_redacted")).toBe(alreadyBefore + 5);
      // Each audited once.
      const audited = (await createAuditLog(svc.store.knex).find({ action: "retention.redact" })).flatMap(
        (r) => r.details.event_ids as string[],
      );
      expect(audited.filter((id) => expired.includes(id)).sort()).toEqual([...expired].sort());

      for (const id of expired) expect(await seen(ann, roomId, id)).not.toBe("content");
      const twice = await withSynapseDb(a, (db) =>
        db.all("SELECT redacts, count(*) AS n FROM redactions GROUP BY redacts HAVING count(*) > 1"),
      );
      expect(twice).toEqual([]);
    });

    it("indexes a room that existed before MedMesh, and deletes opaque uploads after the longest room period", async () => {
      const a = org(0);
      const bridge = a.services.find((x) => x.name === "bridge")!;
      const asBridgeUser = async (method: string, path: string, body: unknown, ts?: number) => {
        const url = new URL(path, a.synapseUrl);
        url.searchParams.set("user_id", `@bridge_legacy:${a.serverName}`);
        if (ts !== undefined) url.searchParams.set("ts", String(ts));
        const res = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${bridge.registration.as_token}`,
            "content-type": "application/json",
          },
          body: JSON.stringify(body),
        });
        return (await res.json()) as { room_id?: string; event_id?: string };
      };
      // Created straight on Synapse (not through the proxy): the bot was never invited.
      await asBridgeUser("POST", "/_matrix/client/v3/register", {
        type: "m.login.application_service",
        username: "bridge_legacy",
      });
      const { room_id: legacy } = await asBridgeUser("POST", "/_matrix/client/v3/createRoom", {});
      const { event_id: old } = await asBridgeUser(
        "PUT",
        `/_matrix/client/v3/rooms/${enc(legacy!)}/send/m.room.message/legacy-1`,
        { msgtype: "m.text", body: "legacy-old-6a1d" },
        Date.now() - 45 * DAY,
      );
      expect(await admin(a, "POST", "/_medmesh/admin/v1/retention/backfill")).toMatchObject({
        rooms: 1,
        events: 1,
      });
      expect(await admin(a, "POST", "/_medmesh/admin/v1/retention/backfill")).toMatchObject({ rooms: 0 });
      // The bot was made the room's admin (and put the policy on it).
      const annClient = await net().client(ann);
      await waitUntil(async () => {
        const res = await fetch(
          `${a.synapseUrl}/_matrix/client/v3/rooms/${enc(legacy!)}/state/m.room.retention/?user_id=${enc(`@medmesh:${a.serverName}`)}`,
          { headers: { authorization: `Bearer ${policy(a).registration.as_token}` } },
        );
        return res.ok;
      }, "the bot joined the legacy room");

      // An encrypted attachment: opaque bytes, referred to only inside ciphertext.
      const { content_uri } = await annClient.uploadContent(Buffer.from("ciphertext-of-an-x-ray"), {
        type: "application/octet-stream",
      });
      const id = content_uri.split("/").pop() ?? "";
      const file = join(a.paths.mediaStore, "local_content", id.slice(0, 2), id.slice(2, 4), id.slice(4));
      expect(existsSync(file)).toBe(true);
      expect((await sweep(a, new Date(Date.now() + 29 * DAY))).failed).toBe(0);
      expect(existsSync(file)).toBe(true); // younger than 30 days
      expect(await inSynapseDb(a, "legacy-old-6a1d")).toBe(false);
      const later = await sweep(a, new Date(Date.now() + 31 * DAY));
      expect(later.failed).toBe(0);
      expect(existsSync(file)).toBe(false);
      expect(old).toBeDefined();
    });
  });
}
