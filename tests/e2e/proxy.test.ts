import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { registerWithSharedSecret } from "@medmesh/deploy";
import type { RunningService } from "@medmesh/common";
import { sharedRoom, useTestNetwork, waitForRoomEvent } from "../harness/index.ts";

const net = useTestNetwork({ name: "proxy" });

function policyModule(i: number): RunningService {
  const svc = net().orgs[i]?.services.find((s) => s.name === "policy-module");
  if (!svc) throw new Error("no policy-module");
  return svc;
}

async function proxied(i: number, listener: string): Promise<number> {
  const metric = await policyModule(i).metrics.getSingleMetric("medmesh_proxy_requests_total")?.get();
  return (metric?.values ?? [])
    .filter((v) => v.labels.listener === listener)
    .reduce((n, v) => n + v.value, 0);
}

describe("the policy proxy in front of Synapse", () => {
  it("carries the clients' and the other organisation's traffic", async () => {
    const [a] = net().orgs;
    expect(a!.clientUrl).toBe(policyModule(0).endpoints.client);
    expect(a!.federationUrl).toBe(policyModule(0).endpoints.federation);
    const before = { clientA: await proxied(0, "client"), federationB: await proxied(1, "federation") };
    const { ac, bc, roomId } = await sharedRoom(net());
    const { event_id: eventId } = await ac.sendTextMessage(roomId, "via both proxies");
    await waitForRoomEvent(bc, roomId, (e) => e.getId() === eventId, { description: "the message on org B" });
    expect(await proxied(0, "client")).toBeGreaterThan(before.clientA);
    // Org A's Synapse delivered the invite and the message to org B through B's federation proxy.
    expect(await proxied(1, "federation")).toBeGreaterThan(before.federationB);
  });

  it("lets a /sync long-poll run its full timeout", async () => {
    const org = net().orgs[0]!;
    const user = await net().registerUser(org);
    const auth = { authorization: `Bearer ${user.accessToken}` };
    const first = (await (
      await fetch(`${org.clientUrl}/_matrix/client/v3/sync?timeout=0`, { headers: auth })
    ).json()) as {
      next_batch: string;
    };
    const started = Date.now();
    const res = await fetch(
      `${org.clientUrl}/_matrix/client/v3/sync?timeout=4000&since=${first.next_batch}`,
      { headers: auth },
    );
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3500);
  });

  it("streams a 40 MiB upload and its download unchanged", async () => {
    const org = net().orgs[0]!;
    const user = await net().registerUser(org);
    const data = randomBytes(40 * 1024 * 1024);
    const up = await fetch(`${org.clientUrl}/_matrix/media/v3/upload?filename=scan.bin`, {
      method: "POST",
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/octet-stream" },
      body: data,
    });
    expect(up.status).toBe(200);
    const { content_uri: mxc } = (await up.json()) as { content_uri: string };
    const [, server, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc) ?? [];
    const down = await fetch(`${org.clientUrl}/_matrix/client/v1/media/download/${server!}/${mediaId!}`, {
      headers: { authorization: `Bearer ${user.accessToken}` },
    });
    expect(down.status).toBe(200);
    const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    expect(digest(new Uint8Array(await down.arrayBuffer()))).toBe(digest(data));
  });

  it("tells Synapse the client's real address, not one the client claims", async () => {
    const org = net().orgs[0]!;
    const user = await net().registerUser(org);
    await fetch(`${org.clientUrl}/_matrix/client/v3/account/whoami`, {
      headers: { authorization: `Bearer ${user.accessToken}`, "x-forwarded-for": "203.0.113.66" },
    });
    const admin = await registerWithSharedSecret(org.synapseUrl, org.registrationSecret, {
      localpart: `admin-${randomBytes(3).toString("hex")}`,
      password: randomBytes(12).toString("hex"),
      admin: true,
    });
    const whois = (await (
      await fetch(`${org.synapseUrl}/_synapse/admin/v1/whois/${encodeURIComponent(user.userId)}`, {
        headers: { authorization: `Bearer ${admin.accessToken}` },
      })
    ).json()) as { devices: Record<string, { sessions: { connections: { ip: string }[] }[] }> };
    const ips = Object.values(whois.devices).flatMap((d) =>
      d.sessions.flatMap((s) => s.connections.map((c) => c.ip)),
    );
    expect(ips).toContain("127.0.0.1");
    expect(ips).not.toContain("203.0.113.66");
  });
});
