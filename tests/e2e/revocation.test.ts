import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger, type RunningService } from "@medmesh/common";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { createPeerClient, PeerError } from "../../policy-module/src/directory/index.ts";
import { loadOrgKey, signRequest, type OrgKey } from "../../policy-module/src/trust/request-signing.ts";
import { REVOCATIONS_PATH, signRevocation } from "../../policy-module/src/identity/revocation-notice.ts";
import {
  adminApi,
  freePorts,
  OpenApiContract,
  useTestNetwork,
  waitForMembership,
  waitUntil,
  type TestUser,
  postgresForSuite,
} from "../harness/index.ts";
import { answers, serviceProcess } from "../harness/service-process.ts";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";

// Revocation that travels (docs/identity.md, "Revocation"): a clinician of A struck off, in a room
// homed on B. Both organisations' stores are on PostgreSQL, so a second policy-module process of
// A (its own OS process, started from A's generated config with other ports) can share A's store.
const postgresUrl = postgresForSuite("revocation that travels");

const record = (number: string, initials: string, surname: string): BigTestRecord => ({
  number,
  initials,
  surname,
  mailingName: `${initials} ${surname}`,
  professionCode: "01",
});
const ANN = record("19012345601", "A.", "Vermeulen");
const CARL = record("29012345602", "C.", "Karsten");
const DORA = record("39012345603", "D.", "Smit");
const EVA = record("49012345604", "E.", "Bakker");
const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));

/** A signed POST of a notice to `to`'s federation port, as `origin`; the answer checked against the OpenAPI document. */
async function postNotice(
  origin: string,
  key: OrgKey,
  to: RunningOrganisation,
  notice: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const content = { notice };
  const authorization = signRequest(key, {
    method: "POST",
    uri: REVOCATIONS_PATH,
    origin,
    destination: to.serverName,
    content,
  });
  const payload = JSON.stringify(content);
  const answer = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
    const req = request(
      new URL(REVOCATIONS_PATH, to.federationUrl),
      {
        method: "POST",
        rejectUnauthorized: false, // the local CA; the test is about what happens after TLS
        headers: {
          authorization,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), text });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
  const op = contract.match("POST", REVOCATIONS_PATH);
  if (!op) throw new Error("POST revocations is not in the OpenAPI document");
  await contract.check(
    op,
    new Response(answer.text, { status: answer.status, headers: { "content-type": answer.type } }),
  );
  return { status: answer.status, body: JSON.parse(answer.text) as Record<string, unknown> };
}

/** Seconds from A's re-verification run to the badge in B's room saying unverified (target ≤ 120). */
const PROPAGATION_TARGET_S = 120;
const ATTESTATION_TTL_S = 20;

if (postgresUrl) {
  const big = await startBigTestServer([ANN, CARL, DORA, EVA]);
  afterAll(() => big.stop());
  const net = useTestNetwork({
    name: "revocation",
    organisations: 2,
    postgresUrl,
    // A's clinicians are checked against the registry alone (no ID document: not what this tests).
    organisationSettings: { 0: { require_id_document: false } },
    // B's members are verified (an unverified user may not invite a verified clinician).
    verifiedClinicians: {
      1: ["bram", "bea", "ben"].map((localpart) => ({
        localpart,
        display_name: localpart,
        profession: "physician",
      })),
    },
    identity: {
      registries: { big: { url: big.url, timeout_ms: 1500 } },
      // Attestations live 20 s (B asks again half-way); the refresh interval is long.
      remote_refresh_seconds: 60,
      attestation_ttl_seconds: ATTESTATION_TTL_S,
      remote_check_seconds: 1,
      revocation: { initial_backoff_seconds: 0.5, max_backoff_seconds: 2 },
      reverify: { schedule: "0 3 * * *", concurrency: 4, rate_per_second: 100 },
    },
  });
  const org = (i: number): RunningOrganisation => net().orgs[i]!;
  const pm = (o: RunningOrganisation): RunningService => o.services.find((s) => s.name === "policy-module")!;

  const api = async (user: TestUser, method: string, path: string, body?: unknown, base?: string) => {
    const res = await fetch(`${base ?? user.org.clientUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const verify = async (u: TestUser, r: BigTestRecord) => {
    const res = await api(u, "POST", "/_medmesh/identity/v1/verification", {
      registry: "BIG",
      number: r.number,
      claimed_name: `${r.initials} ${r.surname}`,
    });
    expect(res.body).toMatchObject({ status: "verified" });
  };
  const badgeOf = async (reader: TestUser, roomId: string, userId: string) => {
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/org.medmesh.verification/${encodeURIComponent(`user:${userId}`)}`;
    const res = await api(reader, "GET", path);
    return res.status === 200 ? res.body : undefined;
  };
  const waitForBadge = (reader: TestUser, roomId: string, userId: string, verified: boolean, ms = 60_000) =>
    waitUntil(
      async () => (await badgeOf(reader, roomId, userId))?.verified === verified,
      `${userId}'s badge in ${roomId} says verified=${String(verified)}`,
      ms,
    );
  /** A room homed on B (created by B's member through B's proxy: B's bot administers it) with `guest` of A. */
  const roomOnB = async (host: TestUser, guest: TestUser): Promise<string> => {
    const [hostClient, guestClient] = await Promise.all([net().client(host), net().client(guest)]);
    const { room_id: roomId } = await hostClient.createRoom({ invite: [guest.userId] });
    await waitForMembership(guestClient, roomId, "invite", { description: "the invite to B's room" });
    await guestClient.joinRoom(roomId);
    await waitForBadge(host, roomId, guest.userId, true);
    return roomId;
  };
  const reverifyA = async () => {
    const res = await adminApi(org(0), "policy-module").fetch("/_medmesh/admin/v1/identity/reverify", {
      method: "POST",
    });
    return (await res.json()) as { revoked: number };
  };
  const search = async (u: TestUser, term: string, base?: string) =>
    (await api(u, "POST", "/_matrix/client/v3/user_directory/search", { search_term: term }, base)).body
      .results as { user_id: string }[];
  const received = async (o: RunningOrganisation, userId: string) =>
    (
      await pm(o)
        .store.knex("received_revocations")
        .where({ user_id: userId })
        .count<{ n: string }[]>({ n: "*" })
    )[0]?.n;
  const counter = async (o: RunningOrganisation, direction: string, outcome: string): Promise<number> => {
    const text = await pm(o).metrics.getSingleMetricAsString("medmesh_identity_revocation_notices_total");
    const line = text
      .split("\n")
      .find((l) => l.includes(`direction="${direction}"`) && l.includes(`outcome="${outcome}"`));
    return line ? Number(line.split(" ").pop()) : 0;
  };

  describe("revocation that travels", () => {
    let second: ReturnType<typeof serviceProcess> | undefined;
    /** Dora (A, still verified) in Bea's room on B, from the forged-notice test. */
    let doraRoom: { dora: TestUser; bea: TestUser; roomId: string } | undefined;
    let secondClientUrl = "";
    afterAll(async () => {
      await second?.stop("SIGTERM");
    });

    it("turns a struck-off clinician's badge in a room homed on B unverified within the propagation target, and A's second process refuses her directory search at once", async () => {
      const a = org(0);
      const [ann, carl, bram] = await Promise.all([
        net().registerUser(a, "ann"),
        net().registerUser(a, "carl"),
        net().registerUser(org(1), "bram"),
      ]);
      await verify(ann, ANN);
      await verify(carl, CARL);
      const roomId = await roomOnB(bram, ann);
      // A group of B for physicians, which Ann joined while verified (docs/groups.md).
      const [bramClient, annClient] = await Promise.all([net().client(bram), net().client(ann)]);
      const { room_id: groupId } = await bramClient.createRoom({
        name: "Physicians of B",
        invite: [ann.userId],
        initial_state: [
          { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
          {
            type: "org.medmesh.group",
            state_key: "",
            content: { listed: true, scope: "network", professions: ["physician"] },
          },
        ],
      });
      await waitForMembership(annClient, groupId, "invite", { description: "the invite to B's group" });
      await annClient.joinRoom(groupId);
      await waitForBadge(bram, groupId, ann.userId, true);
      // Short-lived: the attestation B shows runs out within the TTL, not with the 30-day verification.
      const shown = await badgeOf(bram, roomId, ann.userId);
      expect(Date.parse(String(shown?.expires_at)) - Date.now()).toBeLessThanOrEqual(
        ATTESTATION_TTL_S * 1000,
      );

      // A second policy-module process of A on the same (PostgreSQL) store: its own ports, no bot
      // (one instance runs the verification bot's device).
      const [internal, client, federation] = await freePorts(3);
      const config = parseYaml(readFileSync(a.paths.policyModuleConfig, "utf8")) as {
        listen: { port: number };
        proxy: { client: { port: number }; federation: { port: number } };
        identity: { bot?: boolean };
      };
      config.listen.port = internal!;
      config.proxy.client.port = client!;
      config.proxy.federation.port = federation!;
      config.identity.bot = false;
      const secondConfig = join(net().dataDir, "policy-module-2.yaml");
      writeFileSync(secondConfig, stringifyYaml(config), { mode: 0o600 });
      second = serviceProcess({
        service: "policy-module",
        config: () => secondConfig,
        dataDir: () => net().dataDir,
        ready: () => answers(`http://127.0.0.1:${String(client)}/_matrix/client/versions`),
        readyTimeoutMs: 90_000,
      });
      await second.start();
      secondClientUrl = `http://127.0.0.1:${String(client)}`;
      expect((await search(ann, "karsten", secondClientUrl)).map((r) => r.user_id)).toEqual([carl.userId]);

      big.setRecords([{ ...ANN, registrationEnd: "2026-01-01" }, CARL, DORA, EVA]);
      const started = Date.now();
      expect(await reverifyA()).toMatchObject({ revoked: 1 });
      // The other process follows through the store's notification: no per-process status left.
      await waitUntil(
        async () => (await search(ann, "karsten", secondClientUrl)).length === 0,
        "A's second process no longer serves Ann the clinicians' directory",
        2000,
      );
      const replicaSeconds = (Date.now() - started) / 1000;
      await waitForBadge(bram, roomId, ann.userId, false, PROPAGATION_TARGET_S * 1000);
      // B's room-admin bot removes her from the physicians' group, saying why.
      const removed = await waitUntil(async () => {
        const path = `/_matrix/client/v3/rooms/${encodeURIComponent(groupId)}/state/m.room.member/${encodeURIComponent(ann.userId)}`;
        const member = (await api(bram, "GET", path)).body;
        return member.membership === "leave" ? member : undefined;
      }, "B's bot removes Ann from the physicians' group");
      expect(removed.reason).toMatch(/verified clinician|physician/);
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(
        `revocation propagation: badge in B's room unverified after ${seconds.toFixed(2)} s ` +
          `(target ≤ ${String(PROPAGATION_TARGET_S)} s); A's second process refused after ${replicaSeconds.toFixed(2)} s\n`,
      );
      expect(seconds).toBeLessThanOrEqual(PROPAGATION_TARGET_S);
      // The notice did it, not an attestation refresh (60 s away): B recorded it, once.
      expect(await received(org(1), ann.userId)).toBe("1");
      expect(await counter(org(1), "received", "applied")).toBe(1);
      expect(await search(ann, "karsten", secondClientUrl)).toEqual([]);
      expect(await search(ann, "karsten")).toEqual([]);
      // B's own view of Ann, and its profile lookup: not verified.
      const seen = await adminApi(org(1), "policy-module").json<{ verified: boolean }>(
        "GET",
        `/_medmesh/admin/v1/identity/users/${encodeURIComponent(ann.userId)}`,
      );
      expect(seen.verified).toBe(false);
    });

    it("refuses forged notices (bad signature, another organisation's user, untrusted origin) and changes nothing", async () => {
      const [a, b] = [org(0), org(1)];
      const dora = await net().registerUser(a, "dora");
      const bea = await net().registerUser(b, "bea");
      await verify(dora, DORA);
      const roomId = await roomOnB(bea, dora);
      doraRoom = { dora, bea, roomId };
      const before = await counter(b, "received", "applied");
      const key = loadOrgKey(a.policyModule.organisation!.signing_key_file);
      const ca = a.policyModule.organisation!.ca_files.map((f) => readFileSync(f));
      const asA = createPeerClient({ serverName: a.serverName, orgKey: key, ca });
      const now = Math.floor(Date.now() / 1000);
      const notice = (sub: string, iss = a.serverName) => ({
        iss,
        sub,
        status: "revoked" as const,
        revoked_at: now,
        jti: `forged-${String(Math.random()).slice(2, 12)}`,
        iat: now,
      });
      const refused = async (client: typeof asA, jws: string) => {
        const err = await client.postJson(b.serverName, REVOCATIONS_PATH, { notice: jws }, 5000).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(PeerError);
        return (err as PeerError).status;
      };
      // Signed with another key that claims A's key ID.
      const other = generateKeyPairSync("ed25519").privateKey;
      expect(
        await refused(asA, signRevocation({ kid: key.kid, privateKey: other }, notice(dora.userId))),
      ).toBe(403);
      // A's own key, but about B's user (an organisation revokes only its own users).
      expect(await refused(asA, signRevocation(key, notice(bea.userId)))).toBe(403);
      // A's key, claiming to be issued by B.
      expect(await refused(asA, signRevocation(key, notice(dora.userId, b.serverName)))).toBe(403);
      // From a server that is not on the trust list (its request refused at the gate).
      const evil = createPeerClient({
        serverName: "evil.example",
        orgKey: { kid: key.kid, privateKey: other },
        ca,
        baseUrlOf: () => new URL(b.federationUrl),
      });
      expect(
        await refused(
          evil,
          signRevocation({ kid: key.kid, privateKey: other }, notice("@dora:evil.example", "evil.example")),
        ),
      ).toBe(403);

      // As a raw request too, the refusal checked against the OpenAPI document.
      expect(await postNotice(a.serverName, key, b, signRevocation(key, notice(bea.userId)))).toMatchObject({
        status: 403,
        body: { errcode: "M_FORBIDDEN" },
      });
      // A real notice A sent before (Ann's), sent again: applied once, answered applied false.
      const sent = await pm(a)
        .store.knex("revocation_outbox")
        .whereNotNull("delivered_at")
        .first<{ notice: string } | undefined>("notice");
      expect(await postNotice(a.serverName, key, b, sent!.notice)).toEqual({
        status: 200,
        body: { applied: false },
      });

      expect(await received(b, dora.userId)).toBe("0");
      expect(await counter(b, "received", "applied")).toBe(before);
      expect(await counter(b, "received", "refused")).toBeGreaterThanOrEqual(3);
      expect((await badgeOf(bea, roomId, dora.userId))?.verified).toBe(true);
      const seen = await adminApi(b, "policy-module").json<{ verified: boolean }>(
        "GET",
        `/_medmesh/admin/v1/identity/users/${encodeURIComponent(dora.userId)}`,
      );
      expect(seen.verified).toBe(true);
    });

    it("delivers the notice to a peer that was down while A revoked, once it is back", async () => {
      const [a, b] = [org(0), org(1)];
      const eva = await net().registerUser(a, "eva");
      const ben = await net().registerUser(b, "ben");
      await verify(eva, EVA);
      const roomId = await roomOnB(ben, eva);

      const index = b.services.findIndex((s) => s.name === "policy-module");
      await b.services[index]!.stop();
      big.setRecords([
        { ...ANN, registrationEnd: "2026-01-01" },
        CARL,
        DORA,
        { ...EVA, registrationEnd: "2026-01-01" },
      ]);
      expect(await reverifyA()).toMatchObject({ revoked: 1 });
      // Either process of A may deliver it (they share the outbox): the store says it was tried.
      const attempts = async () =>
        (
          await pm(a)
            .store.knex("revocation_outbox")
            .where({ user_id: eva.userId, peer: b.serverName })
            .whereNull("delivered_at")
            .first<{ attempts: number } | undefined>("attempts")
        )?.attempts ?? 0;
      await waitUntil(async () => (await attempts()) >= 2, "A retried the notice to B");

      b.services[index] = await startPolicyModule(b.policyModule, {
        log: createLogger("policy-module", "warn"),
      });
      const back = Date.now();
      // The notice arrives at A's next attempt (backoff at most 2 s here). B may also learn it on
      // its own as it starts (re-reading the room's recent events, it asks A again).
      await waitUntil(
        async () => (await received(b, eva.userId)) === "1",
        "B recorded A's notice about Eva",
        60_000,
      );
      await waitForBadge(ben, roomId, eva.userId, false, 10_000);
      process.stdout.write(
        `revocation after B came back: notice applied after ${((Date.now() - back) / 1000).toFixed(2)} s\n`,
      );
      const delivered = await pm(a)
        .store.knex("revocation_outbox")
        .where({ user_id: eva.userId, peer: b.serverName })
        .first<{ delivered_at: Date | null } | undefined>("delivered_at");
      expect(delivered?.delivered_at).toBeTruthy();
    });

    it("refreshes the attestations B shows before they run out, and shows unverified once one ran out with A unreachable", async () => {
      const a = org(0);
      const { dora, bea, roomId } = doraRoom!;
      const first = Date.parse(String((await badgeOf(bea, roomId, dora.userId))?.expires_at));
      // B asks A again half-way to expiry, in the background: a later attestation, still verified.
      await waitUntil(
        async () => {
          const badge = await badgeOf(bea, roomId, dora.userId);
          return badge?.verified === true && Date.parse(String(badge.expires_at)) > first;
        },
        "B shows a refreshed attestation of Dora",
        ATTESTATION_TTL_S * 1000,
      );
      const last = Date.parse(String((await badgeOf(bea, roomId, dora.userId))?.expires_at));
      // A goes down: B keeps the valid badge until it runs out, then says unverified.
      const index = a.services.findIndex((s) => s.name === "policy-module");
      await a.services[index]!.stop();
      try {
        await waitForBadge(bea, roomId, dora.userId, false, ATTESTATION_TTL_S * 1000 + 15_000);
        expect(Date.now()).toBeGreaterThanOrEqual(last);
      } finally {
        a.services[index] = await startPolicyModule(a.policyModule, {
          log: createLogger("policy-module", "warn"),
        });
      }
    });
  });
}
