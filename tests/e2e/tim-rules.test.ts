import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "@medmesh/deploy";
import { loadPrivateKey, signTrustList } from "@medmesh/policy-module";
import { everyPathKit, type Answer, type Via } from "../harness/every-path.ts";
import {
  adminApi,
  freePorts,
  OpenApiContract,
  useTestNetwork,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";

// TI-M rules of issue #19 (docs/tim-profile.md) on a network of A (tim-pro), B (tim-epa, with its
// TI-M test driver) and C (tim-pro). Each rule: the refusal on every path, and that Synapse stored
// nothing. The trust-list change comes last: it takes C off the list for the rest of the file.
const net = useTestNetwork({
  name: "tim-rules",
  organisations: 3,
  organisationSettingsFor: async () => {
    const [port] = await freePorts(1);
    return {
      0: { profile: "tim-pro" },
      1: { profile: "tim-epa", tim_driver: { port } },
      2: { profile: "tim-pro" },
    };
  },
});
const { org, user, admin, api, newRoom, membership, roomsNamed, stateOf, expectRefused, invitedRooms } =
  everyPathKit(net);
const enc = encodeURIComponent;
const PRO = "de.gematik.tim.account.permissionconfig.pro.v1";
const EPA = "de.gematik.tim.account.permissionconfig.epa.v1";
const fresh = (prefix: string) => `${prefix}-${randomBytes(6).toString("hex")}`;
const ok = (a: Answer): Answer => {
  expect(a.status, JSON.stringify(a.body)).toBe(200);
  return a;
};
/** A user's global account data as Synapse holds it (admin API). */
const accountData = async (i: number, userId: string): Promise<Record<string, unknown>> =>
  (
    await admin(i).request<{ account_data: { global: Record<string, unknown> } }>(
      "GET",
      `/_synapse/admin/v1/users/${enc(userId)}/accountdata`,
    )
  ).account_data.global;
const putConfig = (u: TestUser, type: string, config: unknown) =>
  api(u, "proxy", "PUT", `/_matrix/client/v3/user/${enc(u.userId)}/account_data/${type}`, config);
const inviteVia = (u: TestUser, via: Via, roomId: string, invitee: string) =>
  api(u, via, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: invitee });

/** A's policy appservice acting as its room bot (as_token + user_id), straight to Synapse. */
const BOT = () => `@medmesh:${org(0).serverName}`;
async function asBot(method: string, path: string, body: unknown): Promise<Answer> {
  const a = org(0);
  const asToken = a.services.find((s) => s.name === "policy-module")?.registration.as_token ?? "";
  const url = new URL(path, a.synapseUrl);
  url.searchParams.set("user_id", BOT());
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const botJoined = (roomId: string) =>
  waitUntil(async () => (await membership(0, roomId, BOT())) === "join", `A's bot joins ${roomId}`);

/** B's TI-M test driver: a JSON request, the answer parsed. */
async function driver(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const d = org(1).timDriver;
  if (!d) throw new Error("B runs no TI-M test driver");
  const res = await fetch(new URL(path, d.url), {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}
async function driverOk(method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await driver(method, path, body);
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
  return res.body;
}
const driverRooms = async (): Promise<string[]> =>
  ((await driverOk("GET", "/devices/1/rooms")) as { roomId: string }[]).map((r) => r.roomId);

describe("TI-M: the ePA permission config type (insured persons)", () => {
  it("an insured person's BlockAll, kept by the driver in the ePA type, is enforced: 403, no invite", async () => {
    await driverOk("POST", "/");
    await driverOk("POST", "/devices/1/claim", { claimerName: "tim-rules", claimFor: 600 });
    const patient = ((await driverOk("POST", "/devices/1/login", {})) as { mxid: string }).mxid;
    expect(await driverOk("POST", "/devices/1/authorizationMode", "BlockAll")).toBe("BlockAll");
    const data = await accountData(1, patient);
    expect(data[EPA]).toEqual({ defaultSetting: "block all" });
    expect(data[PRO]).toBeUndefined();

    const doc = await user(0, fresh("doc"));
    const roomId = await newRoom(doc);
    for (const via of ["proxy", "synapse"] as Via[]) {
      expectRefused(await inviteVia(doc, via, roomId, patient), /does not accept invites from/);
    }
    expect(await membership(0, roomId, patient)).toBeUndefined();
    expect(await driverRooms()).not.toContain(roomId);

    // Allow-listed in the ePA type: the same invite goes through.
    await driverOk("POST", "/devices/1/allowedUsers", {
      mxids: [{ mxid: doc.userId }],
      serverNames: [],
      groupNames: [],
    });
    ok(await inviteVia(doc, "proxy", roomId, patient));
    await waitUntil(async () => (await driverRooms()).includes(roomId), "the invite reaches the patient");

    // Cleanup resets the ePA type (the one the driver's accounts use) to the default.
    await driverOk("POST", "/");
    expect((await accountData(1, patient))[EPA]).toEqual({ defaultSetting: "allow all" });
  });

  it("an insured person's ePA config wins over a Pro one; the Pro one counts when there is no ePA one", async () => {
    const doc = await user(0, fresh("doc"));
    const patient = await user(1, fresh("patient"));
    ok(await putConfig(patient, PRO, { defaultSetting: "block all" }));
    const first = await newRoom(doc);
    expectRefused(await inviteVia(doc, "synapse", first, patient.userId), /does not accept invites from/);
    expect(await membership(0, first, patient.userId)).toBeUndefined();
    ok(await putConfig(patient, EPA, { defaultSetting: "allow all" }));
    ok(await inviteVia(doc, "synapse", first, patient.userId));
    await waitUntil(async () => (await invitedRooms(patient)).includes(first), "the invite reaches B");
  });

  it("a malformed ePA permission config is refused with 400 by the proxy and not stored", async () => {
    const patient = await user(1, fresh("patient"));
    ok(await putConfig(patient, EPA, { defaultSetting: "block all" }));
    const bad = await putConfig(patient, EPA, { defaultSetting: "maybe" });
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
    expect(bad.body.errcode).toBe("M_BAD_JSON");
    expect(bad.body.error).toMatch(
      /Invalid permission config: defaultSetting must be "allow all" or "block all"/,
    );
    const keys = await putConfig(patient, EPA, { defaultSetting: "allow all", userExceptions: { doc: {} } });
    expect(keys.status, JSON.stringify(keys.body)).toBe(400);
    expect((await accountData(1, patient.userId))[EPA]).toEqual({ defaultSetting: "block all" });
  });
});

describe("TI-M: encryption added later to a public room", () => {
  for (const via of ["proxy", "synapse"] as Via[]) {
    for (const version of ["v3", "r0"] as const) {
      it(`m.room.encryption in a public room is refused with 403, nothing stored (state API /${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna, { preset: "public_chat", name: fresh("lobby") });
        const path = `/_matrix/client/${version}/rooms/${enc(roomId)}/state/m.room.encryption/`;
        const megolm = { algorithm: "m.megolm.v1.aes-sha2" };
        expectRefused(
          await api(anna, via, "PUT", path, megolm),
          /Public rooms .* are not end-to-end encrypted/,
        );
        expect(await stateOf(0, roomId, "m.room.encryption")).toBeUndefined();
        // Control: the same event in a private (encrypted, federating) room is accepted.
        const privateRoom = await newRoom(anna);
        const same = `/_matrix/client/${version}/rooms/${enc(privateRoom)}/state/m.room.encryption/`;
        ok(await api(anna, via, "PUT", same, { ...megolm, rotation_period_ms: 604800000 }));
      });
    }

    if (via === "synapse") {
      it("m.room.encryption in a public room is refused for an appservice too (as_token + user_id)", async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna, { preset: "public_chat", name: fresh("lobby") });
        await botJoined(roomId);
        const path = `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.encryption/`;
        expectRefused(
          await asBot("PUT", path, { algorithm: "m.megolm.v1.aes-sha2" }),
          /Public rooms .* are not end-to-end encrypted/,
        );
        expect(await stateOf(0, roomId, "m.room.encryption")).toBeUndefined();
      });
    }

    it(`createRoom: a public room with m.room.encryption in initial_state is refused, nothing stored (via ${via})`, async () => {
      const anna = await user(0, "anna");
      const name = fresh("lobby");
      expectRefused(
        await api(anna, via, "POST", "/_matrix/client/v3/createRoom", {
          name,
          preset: "public_chat",
          initial_state: [
            { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
          ],
        }),
        /Public rooms .* are not end-to-end encrypted/,
      );
      expect(await roomsNamed(0, name)).toBe(0);
    });
  }
});

describe("TI-M: messages into a room with a member's server off the trust list", () => {
  const bodiesIn = async (roomId: string): Promise<string[]> =>
    (
      await admin(0).request<{ chunk: { type: string; content: { body?: unknown } }[] }>(
        "GET",
        `/_synapse/admin/v1/rooms/${enc(roomId)}/messages?dir=b&limit=100`,
      )
    ).chunk.flatMap((e) =>
      e.type === "m.room.message" && typeof e.content.body === "string" ? [e.content.body] : [],
    );
  const send = (u: TestUser, via: Via, version: "v3" | "r0", roomId: string, body: string) =>
    api(u, via, "PUT", `/_matrix/client/${version}/rooms/${enc(roomId)}/send/m.room.message/${fresh("t")}`, {
      msgtype: "m.text",
      body,
    });
  const joinFrom = async (u: TestUser, roomId: string) => {
    await waitUntil(async () => (await invitedRooms(u)).includes(roomId), `the invite reaches ${u.userId}`);
    ok(
      await api(
        u,
        "proxy",
        "POST",
        `/_matrix/client/v3/join/${enc(roomId)}?server_name=${enc(org(0).serverName)}`,
        {},
      ),
    );
  };
  const trusted = async (i: number): Promise<string[]> =>
    (await adminApi(org(i), "policy-module").json<{ servers: string[] }>("GET", "/_medmesh/admin/v1/trust"))
      .servers;

  it("after C leaves A's trust list, A's user gets 403 naming C and the message is not stored; trusted rooms go on", async () => {
    const doc = await user(0, fresh("doc"));
    const cole = await user(2, fresh("cole"));
    const patient = await user(1, fresh("patient"));
    const withC = await newRoom(doc, { invite: [cole.userId] });
    const withB = await newRoom(doc, { invite: [patient.userId] });
    const local = await newRoom(doc);
    await joinFrom(cole, withC);
    await joinFrom(patient, withB);
    const before = ok(await send(doc, "proxy", "v3", withC, "while C is trusted")).body.event_id as string;

    // The operator signs a list without C (as policy-proxy.test.ts adds one).
    const files = join(net().dataDir, "trust");
    const list = JSON.parse(readFileSync(join(files, "list.json"), "utf8")) as Record<string, unknown> & {
      sequence: number;
      organisations: { server_name: string }[];
    };
    const operator = JSON.parse(readFileSync(join(files, "operator.jwk.json"), "utf8")) as { kid: string };
    const withoutC = {
      ...list,
      sequence: list.sequence + 1,
      organisations: list.organisations.filter((o) => o.server_name !== org(2).serverName),
    };
    writeFileSync(join(files, "list.jws"), signTrustList(withoutC, loadPrivateKey(operator), operator.kid));
    await waitUntil(
      async () => !(await trusted(0)).includes(org(2).serverName),
      "A no longer trusts C",
      60_000,
    );

    // A's Synapse restarts to read its federation whitelist: wait until it answers again.
    const refused = await waitUntil(
      async () => {
        const a = await send(doc, "synapse", "v3", withC, "to C, straight to Synapse").catch(() => undefined);
        return a && a.status !== 502 && a.status !== 503 ? a : undefined;
      },
      "A's Synapse answers after the trust list change",
      60_000,
    );
    const naming = new RegExp(
      `${org(2).serverName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.* not an organisation on this network's trust list`,
    );
    expectRefused(refused, naming);
    for (const [via, version] of [
      ["proxy", "v3"],
      ["proxy", "r0"],
      ["synapse", "r0"],
    ] as const) {
      expectRefused(await send(doc, via, version, withC, `to C via ${via} /${version}`), naming);
    }
    // An appservice acting for a user of its namespace: A's room bot, a member of every room
    // created through the proxy.
    await botJoined(withC);
    expectRefused(
      await asBot("PUT", `/_matrix/client/v3/rooms/${enc(withC)}/send/m.room.message/${fresh("t")}`, {
        msgtype: "m.notice",
        body: "to C from the bot",
      }),
      naming,
    );
    const stored = await bodiesIn(withC);
    expect(stored).toContain("while C is trusted");
    expect(stored.filter((b) => b.startsWith("to C"))).toEqual([]);

    // Rooms with trusted servers only, and rooms of local members only, go on as before.
    ok(await send(doc, "proxy", "v3", withB, "to B"));
    ok(await send(doc, "synapse", "r0", local, "local only"));
    expect(await bodiesIn(withB)).toContain("to B");
    expect(await bodiesIn(local)).toContain("local only");
    // Removing content and leaving stay possible in the room with C.
    const redact = `/_matrix/client/v3/rooms/${enc(withC)}/redact/${enc(before)}/${fresh("t")}`;
    ok(await api(doc, "proxy", "PUT", redact, {}));
    ok(await api(doc, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(withC)}/leave`, {}));
    expect(await membership(0, withC, doc.userId)).toBe("leave");
  });

  it("the decision API answers the module's message question as its document says", async () => {
    const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "decisions.yaml"));
    const token = readFileSync(org(0).paths.decisionToken, "utf8").trim();
    const ask = async (body: unknown): Promise<Response> => {
      const res = await fetch(`${org(0).policyModuleUrl}/_medmesh/decide/v1/message`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      await contract.check("POST /_medmesh/decide/v1/{check}", res.clone());
      return res;
    };
    const q = (servers: string[]) => ({ sender: `@x:${org(0).serverName}`, room_id: "!r:x", servers });
    expect(await (await ask(q([org(1).serverName]))).json()).toEqual({ allow: true });
    expect(await (await ask(q([org(1).serverName, org(2).serverName]))).json()).toMatchObject({
      allow: false,
      errcode: "M_FORBIDDEN",
    });
    expect((await ask(q([]))).status).toBe(400);
  });
});
