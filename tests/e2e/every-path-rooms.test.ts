import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createLogger } from "@medmesh/common";
import { REPO_ROOT } from "@medmesh/deploy";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { everyPathKit, type Answer, type Via } from "../harness/every-path.ts";
import { OpenApiContract, useTestNetwork } from "../harness/index.ts";

// One row per (rule × path), as in every-path-invites.test.ts: E2EE, history, join rules and the
// directory through every API version and door; joins to rooms of a server off the trust list
// (C runs MedMesh but is unlisted); and every guarded action with the policy module down.
const net = useTestNetwork({
  name: "every-path-rooms",
  organisations: 3,
  trust: { unlisted: ["org-c"], refresh_seconds: 1 },
  verifiedClinicians: {
    0: [{ localpart: "anna", display_name: "Dr. Anna de Vries", profession: "physician" }],
  },
});
const { org, user, admin, api, newRoom, membership, roomsNamed, stateOf, expectRefused } = everyPathKit(net);
const enc = encodeURIComponent;

// --- room state: E2EE, history, join rules, directory ------------------------------------------

describe("every rule on every path: room state", () => {
  const MEGOLM = { algorithm: "m.megolm.v1.aes-sha2" };
  for (const via of ["proxy", "synapse"] as const) {
    for (const version of ["v3", "r0"] as const) {
      it(`E2EE is Megolm × createRoom initial_state (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const create = (algorithm: string, name: string) =>
          api(anna, via, "POST", `/_matrix/client/${version}/createRoom`, {
            name,
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm } }],
          });
        const name = `row-${randomBytes(6).toString("hex")}`;
        expectRefused(await create("m.none.plaintext", name), /end-to-end encrypted with m\.megolm/);
        expect(await roomsNamed(0, name)).toBe(0);
        const ok = await create(MEGOLM.algorithm, `${name}-ok`);
        expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      });

      it(`E2EE is Megolm × a later m.room.encryption state event (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna);
        const path = `/_matrix/client/${version}/rooms/${enc(roomId)}/state/m.room.encryption/`;
        expectRefused(await api(anna, via, "PUT", path, { algorithm: "m.none.plaintext" }), /not allowed/);
        expectRefused(await api(anna, via, "PUT", path, {}), /no algorithm is not allowed/);
        expect(await stateOf(0, roomId, "m.room.encryption")).toEqual(MEGOLM);
        const same = await api(anna, via, "PUT", path, { ...MEGOLM, rotation_period_ms: 604800000 });
        expect(same.status, JSON.stringify(same.body)).toBe(200);
      });

      it(`history never world_readable; no public rooms × state API (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna);
        const state = (type: string) => `/_matrix/client/${version}/rooms/${enc(roomId)}/state/${type}/`;
        expectRefused(
          await api(anna, via, "PUT", state("m.room.history_visibility"), {
            history_visibility: "world_readable",
          }),
          /world_readable/,
        );
        expectRefused(
          await api(anna, via, "PUT", state("m.room.join_rules"), { join_rule: "public" }),
          /Public rooms/,
        );
        expect(await stateOf(0, roomId, "m.room.history_visibility")).toEqual({
          history_visibility: "shared",
        });
        expect(await stateOf(0, roomId, "m.room.join_rules")).toEqual({ join_rule: "invite" });
        const knock = await api(anna, via, "PUT", state("m.room.join_rules"), { join_rule: "knock" });
        expect(knock.status, JSON.stringify(knock.body)).toBe(200);
      });
    }

    it(`no public rooms × createRoom preset public_chat (via ${via})`, async () => {
      const anna = await user(0, "anna");
      const name = `row-${randomBytes(6).toString("hex")}`;
      const r = await api(anna, via, "POST", "/_matrix/client/v3/createRoom", {
        name,
        preset: "public_chat",
      });
      expectRefused(r, /Public rooms/);
      expect(await roomsNamed(0, name)).toBe(0);
    });

    it(`only verified clinicians list rooms in the directory × PUT /directory/list/room (via ${via})`, async () => {
      const asker = await user(0, "asker");
      const roomId = await newRoom(asker);
      const path = `/_matrix/client/v3/directory/list/room/${enc(roomId)}`;
      expectRefused(await api(asker, via, "PUT", path, { visibility: "public" }), /Only verified clinicians/);
      expect(
        (await admin(0).request<{ public: boolean }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}`))
          .public,
      ).toBe(false);
      const anna = await user(0, "anna");
      const annas = await newRoom(anna);
      const ok = await api(anna, via, "PUT", `/_matrix/client/v3/directory/list/room/${enc(annas)}`, {
        visibility: "public",
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    });
  }

  it("a room upgrade keeps Megolm (the upgrade passes the same decision point)", async () => {
    const anna = await user(0, "anna");
    const roomId = await newRoom(anna);
    const up = await api(anna, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/upgrade`, {
      new_version: "12",
    });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    expect(await stateOf(0, up.body.replacement_room as string, "m.room.encryption")).toEqual(MEGOLM);
  });
});

// --- joins to rooms of untrusted servers --------------------------------------------------------

describe("every rule on every path: joins to rooms of servers off the trust list", () => {
  it("refuses joins to C's room by alias, by room ID with and without via, and through the state API", async () => {
    const carl = await user(2, "carl");
    const alias = `untrusted-${randomBytes(4).toString("hex")}`;
    const created = await api(carl, "proxy", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      room_version: "10", // room IDs of version 10 name their server; version 12 IDs do not
      room_alias_name: alias,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    const c = org(2).serverName;
    const asker = await user(0, "asker");
    const rows: [Via, string, string, unknown, RegExp][] = [
      [
        "proxy",
        "POST",
        `/_matrix/client/v3/join/${enc(`#${alias}:${c}`)}`,
        {},
        /not an organisation on this network's trust list/,
      ],
      ["proxy", "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${enc(c)}`, {}, /trust list/],
      [
        "synapse",
        "POST",
        `/_matrix/client/v3/rooms/${enc(roomId)}/join`,
        {},
        /is not on this network's trust list/,
      ],
      [
        "synapse",
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(asker.userId)}`,
        { membership: "join" },
        /trust list/,
      ],
      ["proxy", "POST", `/_matrix/client/v3/knock/${enc(roomId)}?via=${enc(c)}`, {}, /trust list/],
    ];
    for (const [via, method, path, body, reason] of rows) {
      const r = await api(asker, via, method, path, body);
      expect(r.status, `${method} ${path} via ${via}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.error, path).toMatch(reason);
    }
    // A's Synapse has no trace of the room.
    await expect(admin(0).request("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}`)).rejects.toThrow(
      /404|not found/i,
    );
  });
});

// --- fail closed --------------------------------------------------------------------------------

describe("every rule on every path: fail closed", () => {
  it("refuses every guarded action, saying why, while the policy module is down; allows again after it starts", async () => {
    const a = org(0);
    const anna = await user(0, "anna");
    const open = await user(0, "open");
    const roomId = await newRoom(anna);
    const index = a.services.findIndex((s) => s.name === "policy-module");
    await a.services[index]!.stop();
    const why = /MedMesh's policy service could not be reached/;
    const guarded = async (): Promise<Answer[]> => [
      await api(anna, "synapse", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: open.userId,
      }),
      await api(anna, "synapse", "POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }),
      await api(anna, "synapse", "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.join_rules/`, {
        join_rule: "knock",
      }),
      await api(anna, "synapse", "PUT", `/_matrix/client/v3/directory/list/room/${enc(roomId)}`, {
        visibility: "public",
      }),
    ];
    try {
      for (const answer of await guarded()) expectRefused(answer, why);
      expect(await membership(0, roomId, open.userId)).toBeUndefined();
      expect(await stateOf(0, roomId, "m.room.join_rules")).toEqual({ join_rule: "invite" });
    } finally {
      a.services[index] = await startPolicyModule(a.policyModule, {
        log: createLogger("policy-module", "warn"),
      });
    }
    for (const answer of await guarded()) expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(await membership(0, roomId, open.userId)).toBe("invite");
  });
});

// --- the decision API itself ---------------------------------------------------------------------

describe("the decision API Synapse's module calls", () => {
  const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "decisions.yaml"));
  const ask = async (check: string, body: unknown, token?: string): Promise<Response> => {
    const res = await fetch(`${org(0).policyModuleUrl}/_medmesh/decide/v1/${check}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body),
    });
    await contract.check("POST /_medmesh/decide/v1/{check}", res.clone());
    return res;
  };

  it("answers well-formed questions with the token, and nothing else", async () => {
    const token = readFileSync(org(0).paths.decisionToken, "utf8").trim();
    const anna = await user(0, "anna");
    const event = (algorithm: string) => ({
      type: "m.room.encryption",
      state_key: "",
      sender: anna.userId,
      room_id: "!r:x",
      content: { algorithm },
    });
    expect(await (await ask("state_event", event("m.megolm.v1.aes-sha2"), token)).json()).toEqual({
      allow: true,
    });
    const refused = (await (await ask("state_event", event("m.none.plaintext"), token)).json()) as Record<
      string,
      unknown
    >;
    expect(refused).toMatchObject({ allow: false, errcode: "M_FORBIDDEN" });
    expect((await ask("state_event", event("m.megolm.v1.aes-sha2"))).status).toBe(401);
    expect((await ask("state_event", event("m.megolm.v1.aes-sha2"), `${token}x`)).status).toBe(401);
    expect((await ask("state_event", { type: 1 }, token)).status).toBe(400);
    expect((await ask("reticulate", {}, token)).status).toBe(404);
  });
});
