import { Preset, type MatrixClient } from "matrix-js-sdk";
import type { TestNetwork, TestUser } from "./test-network.ts";
import { waitForMembership, waitForRoomEvent } from "./wait.ts";

export interface SharedRoom {
  alice: TestUser;
  bob: TestUser;
  ac: MatrixClient;
  bc: MatrixClient;
  roomId: string;
}

/**
 * The common opening of a federation test: Alice (first organisation) creates a room and invites
 * Bob (second organisation), Bob joins over federation, and Alice has seen the join. The room is
 * end-to-end encrypted, as every room created through the MedMesh proxy is.
 */
export async function sharedRoom(net: TestNetwork): Promise<SharedRoom> {
  const [a, b] = net.orgs;
  if (!a || !b) throw new Error("sharedRoom needs two organisations");
  const alice = await net.registerUser(a);
  const bob = await net.registerUser(b);
  const [ac, bc] = await Promise.all([net.client(alice), net.client(bob)]);
  const { room_id: roomId } = await ac.createRoom({
    preset: Preset.PrivateChat,
    invite: [bob.userId],
  });
  await waitForMembership(bc, roomId, "invite", { description: `federated invite from ${a.serverName}` });
  await bc.joinRoom(roomId);
  await waitForRoomEvent(
    ac,
    roomId,
    (e) =>
      e.getType() === "m.room.member" &&
      e.getStateKey() === bob.userId &&
      e.getContent().membership === "join",
    { description: "Bob's join, seen by Alice over federation" },
  );
  return { alice, bob, ac, bc, roomId };
}

/**
 * One user per organisation and name for a whole test file, registered on first use: tests that
 * share a network refer to "anna of A" instead of passing users around.
 */
export function namedUsers(net: () => TestNetwork): (org: number, localpart: string) => Promise<TestUser> {
  const users = new Map<string, Promise<TestUser>>();
  return (i, localpart) => {
    const key = `${String(i)}/${localpart}`;
    let u = users.get(key);
    if (!u) {
      const org = net().orgs[i];
      if (!org) throw new Error(`the network has no organisation ${String(i)}`);
      u = net().registerUser(org, localpart);
      users.set(key, u);
    }
    return u;
  };
}
