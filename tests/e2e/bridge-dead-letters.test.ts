import { join } from "node:path";
import { createLogger } from "@medmesh/common";
import { start as startBridge } from "@medmesh/bridge";
import { REPO_ROOT } from "@medmesh/deploy";
import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { TestVendor } from "../harness/interop-vendor.ts";
import {
  adminApi,
  OpenApiContract,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";

// An event a service cannot act on must not block the ones behind it: Synapse resends a failed
// transaction, and everything after it, until it succeeds. Here a ghost is invited to a room it
// is banned from before it can join (the bridge is down meanwhile): its join fails for good.
const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const net = useTestNetwork({
  name: "bridge-dead-letters",
  organisations: 1,
  organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
});
const org = () => net().orgs[0]!;
const bridge = () => adminApi(org(), "bridge");
const contract = new OpenApiContract(join(REPO_ROOT, "common", "openapi", "service.yaml"));
const DEAD_LETTERS = "/_medmesh/admin/v1/appservice/dead-letters";

interface DeadLetter {
  event_id: string;
  room_id: string;
  type: string;
  state_key: string | null;
  error: string;
  attempts: number;
}
/** An admin API call, checked against the frame's OpenAPI document. */
async function call<T>(method: string, path: string): Promise<T> {
  const res = await bridge().fetch(path, { method });
  const op = contract.match(method, path);
  if (!op) throw new Error(`${method} ${path} is not in common/openapi/service.yaml`);
  await contract.check(op, res.clone());
  if (!res.ok) throw new Error(`${method} ${path}: ${String(res.status)} ${await res.text()}`);
  return (await res.json()) as T;
}
const deadLetters = async () =>
  (await call<{ dead_letters: DeadLetter[] }>("GET", DEAD_LETTERS)).dead_letters;
const transactions = async (outcome: string) => {
  const m = new RegExp(
    `^medmesh_appservice_transactions_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)`,
    "m",
  ).exec(await bridge().metrics());
  return Number(m?.[1] ?? 0);
};

describe("bridge: an invite to a ghost whose join fails for good is a dead letter", () => {
  let alice: TestUser;
  let client: MatrixClient;
  let portal: string;
  let banned: string;
  const anna = () => `@bridge_refmsg_anna:${org().serverName}`;

  it("a portal carries Matrix → vendor", async () => {
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    portal = await vendor.openConversation(
      { conversation_id: "c-1", kind: "direct", creator: "anna", members: ["anna", alice.userId] },
      client,
    );
    await vendor.send({
      type: "message",
      conversation_id: "c-1",
      message_id: "hi",
      sender: "anna",
      text: "hi",
    });
    await waitForRoomEvent(client, portal, (e) => e.getContent().body === "hi", {
      description: "Anna's message in the encrypted portal",
    });
    await client.sendMessage(portal, { msgtype: MsgType.Text, body: "before" });
    await vendor.delivered((e) => e.text === "before", "the first message at the vendor");
  });

  it("the invite is recorded as a dead letter, and the messages after it reach the vendor", async () => {
    ({ room_id: banned } = await client.createRoom({ name: "No ghosts here" }));
    const i = org().services.findIndex((s) => s.name === "bridge");
    await org().services[i]?.stop();
    // While the bridge is down Synapse stores both: the ghost's join will be refused.
    await client.invite(banned, anna());
    await client.ban(banned, anna(), "not in this room");
    org().services[i] = await startBridge(org().bridge, {
      log: createLogger("bridge", "info", join(org().paths.root, "logs", "bridge-restarted.log")),
    });
    const [letter] = await waitUntil(async () => {
      const found = await deadLetters();
      return found.length > 0 ? found : undefined;
    }, "the invite is a dead letter");
    expect(letter).toMatchObject({
      room_id: banned,
      type: "m.room.member",
      state_key: anna(),
      attempts: 1,
    });
    expect(letter?.error).toMatch(/\(403\).*banned/);
    expect(Object.keys(letter ?? {})).not.toContain("content");

    await client.sendMessage(portal, { msgtype: MsgType.Text, body: "after" });
    await vendor.delivered((e) => e.text === "after", "the message sent after the invite at the vendor");
    expect(vendor.texts(/^(before|after)$/)).toEqual(["before", "after"]);
    // Acknowledged: Synapse does not send it again (its first retry would come within seconds).
    await new Promise((r) => setTimeout(r, 5000));
    expect(await transactions("failed"), "transactions answered with an error").toBe(0);
    expect(await transactions("processed")).toBeGreaterThan(0);
    expect((await deadLetters())[0]?.attempts).toBe(1);
    const metrics = await bridge().metrics();
    expect(metrics).toMatch(/^medmesh_appservice_dead_letters\{[^}]*\} 1$/m);
    expect(metrics).toMatch(
      /^medmesh_appservice_dead_letters_total\{[^}]*outcome="dead_lettered"[^}]*\} 1$/m,
    );

    const audit = await org()
      .services[i]!.store.knex("audit_log")
      .where({ action: "appservice.dead_letter", object: letter?.event_id ?? "" })
      .select<{ actor: string; details: Record<string, unknown> }[]>("actor", "details");
    expect(audit).toHaveLength(1);
    expect(audit[0]?.details).toMatchObject({ service: "bridge", room_id: banned, type: "m.room.member" });
    expect(JSON.stringify(audit[0]?.details)).not.toContain("not in this room");
  });

  it("a retry fetches the event again: refused while the ghost is banned, handled once it may join", async () => {
    const [letter] = await deadLetters();
    const retry = `${DEAD_LETTERS}/${encodeURIComponent(letter?.event_id ?? "")}/retry`;
    expect(await call<{ outcome: string }>("POST", retry)).toMatchObject({ outcome: "failed" });
    expect((await deadLetters())[0]?.attempts).toBe(2);

    await client.unban(banned, anna());
    await client.invite(banned, anna());
    await waitUntil(
      async () => (await client.getJoinedRoomMembers(banned)).joined[anna()],
      "the ghost joined on the new invite",
    );
    expect(await call<{ outcome: string }>("POST", retry)).toEqual({ outcome: "handled" });
    expect(await deadLetters()).toEqual([]);
    // Each retry is audited with whoever asked (here the operator's admin token) as the actor.
    const retries = await org()
      .services.find((s) => s.name === "bridge")!
      .store.knex("audit_log")
      .where({ action: "appservice.dead_letter_retry", object: letter?.event_id ?? "" })
      .orderBy("seq")
      .select<{ actor: string; on_behalf_of: string | null; outcome: string }[]>(
        "actor",
        "on_behalf_of",
        "outcome",
      );
    expect(retries).toEqual([
      { actor: "admin-token", on_behalf_of: `@medmesh-bridge:${org().serverName}`, outcome: "failed" },
      { actor: "admin-token", on_behalf_of: `@medmesh-bridge:${org().serverName}`, outcome: "handled" },
    ]);
    const missing = await bridge().fetch(retry, { method: "POST" });
    await contract.check(contract.match("POST", retry) ?? "", missing.clone());
    expect(missing.status).toBe(404);
  });
});
