import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateKey, loadOrgKey, loadPrivateKey, signRequest, signTrustList } from "@medmesh/policy-module";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import {
  adminApi,
  namedUsers,
  OpenApiContract,
  useTestNetwork,
  waitForMembership,
  type TestUser,
} from "../harness/index.ts";

// A and B are on the network's signed trust list; C runs the same software but is not listed.
const net = useTestNetwork({
  name: "policy-proxy",
  organisations: 3,
  trust: { unlisted: ["org-c"], refresh_seconds: 1 },
  verifiedClinicians: {
    0: [{ localpart: "anna", display_name: "Dr. Anna de Vries", profession: "physician" }],
    1: [{ localpart: "bram", display_name: "Bram Jansen", profession: "nurse" }],
  },
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function api(user: TestUser, method: string, path: string, body?: unknown): Promise<Answer> {
  const res = await fetch(`${user.org.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const org = (i: number): RunningOrganisation => net().orgs[i]!;
const user = namedUsers(net);

async function createRoom(u: TestUser, body: Record<string, unknown> = {}): Promise<Answer> {
  return api(u, "POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", ...body });
}

async function invite(u: TestUser, roomId: string, userId: string): Promise<Answer> {
  return api(u, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: userId });
}

async function trustStatus(
  o: RunningOrganisation,
): Promise<{ servers: string[]; sources: { ok: boolean; error?: string }[] }> {
  return adminApi(o, "policy-module").json("GET", "/_medmesh/admin/v1/trust");
}

describe("policy proxy: E2EE by default and metadata stripping", () => {
  it("creates every room encrypted and refuses unencrypted announcement rooms", async () => {
    const anna = await user(0, "anna");
    const room = await createRoom(anna, { name: "ward round" });
    expect(room.status).toBe(200);
    const state = await api(
      anna,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(room.body.room_id as string)}/state/m.room.encryption/`,
    );
    expect(state).toEqual({ status: 200, body: { algorithm: "m.megolm.v1.aes-sha2" } });

    const announcement = await createRoom(anna, {
      creation_content: { "org.medmesh.announcement": true },
      power_level_content_override: { events_default: 100 },
    });
    expect(announcement.status).toBe(403);
    expect(announcement.body.error).toMatch(/Unencrypted announcement rooms are not allowed/);
  });

  it("strips EXIF/GPS from an uploaded JPEG without touching its pixels; passes encrypted files unchanged", async () => {
    const anna = await user(0, "anna");
    const upload = async (data: Buffer, type: string): Promise<Buffer> => {
      const res = await fetch(`${anna.org.clientUrl}/_matrix/media/v3/upload?filename=x`, {
        method: "POST",
        headers: { authorization: `Bearer ${anna.accessToken}`, "content-type": type },
        body: data,
      });
      expect(res.status).toBe(200);
      const mxc = ((await res.json()) as { content_uri: string }).content_uri.slice("mxc://".length);
      const down = await fetch(`${anna.org.clientUrl}/_matrix/client/v1/media/download/${mxc}`, {
        headers: { authorization: `Bearer ${anna.accessToken}` },
      });
      expect(down.status).toBe(200);
      return Buffer.from(await down.arrayBuffer());
    };
    const stored = await upload(JPEG_WITH_GPS, "image/jpeg");
    expect(stored.includes(Buffer.from("Exif\0\0"))).toBe(false);

    // Decoded by Pillow (Synapse's own image library): same pixels, no GPS, no EXIF at all.
    const dir = mkdtempSync(join(tmpdir(), "medmesh-jpeg-"));
    writeFileSync(join(dir, "original.jpg"), JPEG_WITH_GPS);
    writeFileSync(join(dir, "stored.jpg"), stored);
    const report = execFileSync(join(REPO_ROOT, "deploy/.venv/bin/python"), [
      "-c",
      `import sys, json
from PIL import Image
a, b = Image.open(sys.argv[1]), Image.open(sys.argv[2])
print(json.dumps({"same_pixels": a.tobytes() == b.tobytes(), "size": b.size,
  "gps_before": len(a.getexif().get_ifd(0x8825)), "gps_after": len(b.getexif().get_ifd(0x8825)),
  "exif_after": len(b.getexif())}))`,
      join(dir, "original.jpg"),
      join(dir, "stored.jpg"),
    ]).toString();
    expect(JSON.parse(report)).toEqual({
      same_pixels: true,
      size: [16, 16],
      gps_before: 4,
      gps_after: 0,
      exif_after: 0,
    });

    const ciphertext = randomBytes(4096);
    expect((await upload(ciphertext, "application/octet-stream")).equals(ciphertext)).toBe(true);

    const bogus = await fetch(`${anna.org.clientUrl}/_matrix/media/v3/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${anna.accessToken}`, "content-type": "image/png" },
      body: "not a png",
    });
    expect(bogus.status).toBe(400);
    expect(((await bogus.json()) as { error: string }).error).toMatch(
      /not a valid image\/png file: no PNG signature/,
    );
  });
});

describe("policy proxy: verified-only directory", () => {
  it("lets a verified clinician find verified clinicians on both organisations", async () => {
    const anna = await user(0, "anna");
    await user(1, "bram");
    const search = (term: string) =>
      api(anna, "POST", "/_matrix/client/v3/user_directory/search", { search_term: term });
    expect((await search("jansen")).body).toEqual({
      limited: false,
      results: [{ user_id: `@bram:${org(1).serverName}`, display_name: "Bram Jansen" }],
    });
    expect((await search("de vries")).body.results).toEqual([
      { user_id: anna.userId, display_name: "Dr. Anna de Vries" },
    ]);
    const profile = await api(
      anna,
      "GET",
      `/_matrix/client/v3/profile/${encodeURIComponent(`@bram:${org(1).serverName}`)}`,
    );
    expect(profile).toEqual({ status: 200, body: { displayname: "Bram Jansen" } });
  });

  it("shows an unverified user only the people they share a room with", async () => {
    const uma = await user(0, "uma");
    const carla = await user(0, "carla");
    const room = await createRoom(uma, { invite: [carla.userId] });
    await api(
      carla,
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(room.body.room_id as string)}`,
      {},
    );
    const search = (term: string) =>
      api(uma, "POST", "/_matrix/client/v3/user_directory/search", { search_term: term });
    // Synapse's directory updates asynchronously after the join.
    const deadline = Date.now() + 20_000;
    let found: unknown[] = [];
    while (Date.now() < deadline) {
      found = (await search("carla")).body.results as unknown[];
      if (found.length) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(found).toEqual([expect.objectContaining({ user_id: carla.userId })]);
    expect((await search("jansen")).body.results).toEqual([]);
    expect((await search("anna")).body.results).toEqual([]);
    const profile = await api(
      uma,
      "GET",
      `/_matrix/client/v3/profile/${encodeURIComponent(`@bram:${org(1).serverName}`)}`,
    );
    expect(profile.status).toBe(403);
  });
});

describe("policy module: its own APIs, as documented", () => {
  const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));

  it("answers a trusted peer's signed FHIR search, and refuses unsigned, forged and untrusted ones", async () => {
    const a = org(0);
    const b = org(1);
    const uri = "/_medmesh/fhir/r4/Practitioner?name=de%20vries&_count=5";
    const bKey = loadOrgKey(b.paths.organisationKey);
    const signed = (path: string, origin = b.serverName, key = bKey) =>
      signRequest(key, { method: "GET", uri: path, origin, destination: a.serverName });
    const op = "GET /_medmesh/fhir/r4/Practitioner";

    const ok = await fetchInsecure(`${a.federationUrl}${uri}`, signed(uri));
    await contract.check(op, ok.response.clone());
    const bundle = (await ok.response.json()) as {
      total: number;
      entry: { resource: { name?: { text: string }[] } }[];
    };
    expect(bundle.total).toBe(1);
    expect(bundle.entry[0]?.resource.name?.[0]?.text).toBe("Dr. Anna de Vries");

    const bare = "/_medmesh/fhir/r4/Practitioner";
    const refusals: [string, string | undefined, number][] = [
      [uri, undefined, 401], // unsigned
      [uri, signed(uri.replace("vries", "boer")), 401], // signature over another URI
      [uri, signed(uri, b.serverName, { ...bKey, privateKey: generateKeyObject() }), 401], // B's name, another key
      [uri, signed(uri, org(2).serverName, loadOrgKey(org(2).paths.organisationKey)), 403], // C: not listed
      [bare, signed(bare), 400], // neither name nor identifier
    ];
    for (const [path, auth, status] of refusals) {
      const res = await fetchInsecure(`${a.federationUrl}${path}`, auth);
      expect(res.status).toBe(status);
      await contract.check(op, res.response);
    }
  });

  it("reports the trust lists in force", async () => {
    const res = await adminApi(org(0), "policy-module").fetch("/_medmesh/admin/v1/trust");
    await contract.check("GET /_medmesh/admin/v1/trust", res.clone());
    const status = (await res.json()) as { servers: string[]; networks: { network: string }[] };
    expect(status.servers).toEqual([org(0).serverName, org(1).serverName].sort());
    expect(status.networks.map((n) => n.network)).toEqual(["medmesh-local"]);
  });
});

describe("policy proxy: TI-Messenger invite permissions", () => {
  const PERMISSIONS = "de.gematik.tim.account.permissionconfig.pro.v1";

  it("enforces 'block all' with one user exception on federated and local invites", async () => {
    const anna = await user(0, "anna");
    const uma = await user(0, "uma");
    const bea = await user(1, "bea");
    const ben = await user(1, "ben");
    const set = await api(
      bea,
      "PUT",
      `/_matrix/client/v3/user/${encodeURIComponent(bea.userId)}/account_data/${PERMISSIONS}`,
      {
        defaultSetting: "block all",
        userExceptions: { [anna.userId]: {} },
      },
    );
    expect(set.status).toBe(200);

    // Federated: Anna is the exception; Uma is refused by B's proxy, and A's Synapse reports it.
    const annaRoom = (await createRoom(anna)).body.room_id as string;
    expect((await invite(anna, annaRoom, bea.userId)).status).toBe(200);
    const beaClient = await net().client(bea);
    await waitForMembership(beaClient, annaRoom, "invite", { description: "Anna's invite reaching Bea" });
    const umaRoom = (await createRoom(uma)).body.room_id as string;
    const refused = await invite(uma, umaRoom, bea.userId);
    expect(refused.status).toBe(403);
    expect(JSON.stringify(refused.body)).toMatch(/does not accept invites from/);

    // Local: Ben on Bea's own server is refused by the proxy, with the reason.
    const benRoom = (await createRoom(ben)).body.room_id as string;
    expect(await invite(ben, benRoom, bea.userId)).toEqual({
      status: 403,
      body: { errcode: "M_FORBIDDEN", error: `${bea.userId} does not accept invites from ${ben.userId}` },
    });
    // Also at room creation.
    expect((await createRoom(ben, { invite: [bea.userId] })).status).toBe(403);
  });

  it("applies the organisation default: unverified users cannot invite verified clinicians", async () => {
    const bram = await user(1, "bram");
    const ben = await user(1, "ben");
    const anna = await user(0, "anna");
    const benRoom = (await createRoom(ben)).body.room_id as string;
    const refused = await invite(ben, benRoom, bram.userId);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatch(/is a verified clinician/);
    const annaRoom = (await createRoom(anna)).body.room_id as string;
    expect((await invite(anna, annaRoom, bram.userId)).status).toBe(200); // verified on another org
  });

  it("refuses a malformed permission config", async () => {
    const bea = await user(1, "bea");
    const res = await api(
      bea,
      "PUT",
      `/_matrix/client/v3/user/${encodeURIComponent(bea.userId)}/account_data/${PERMISSIONS}`,
      {
        defaultSetting: "allow some",
      },
    );
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/Invalid permission config: defaultSetting/);
  });
});

describe("policy proxy: signed trust list (closed federation)", () => {
  it("refuses the untrusted server's invites and joins, and lets trusted servers federate", async () => {
    const anna = await user(0, "anna");
    const cole = await user(2, "cole");
    const room = (await createRoom(anna)).body.room_id as string;

    // A local user cannot invite into C …
    const out = await invite(anna, room, cole.userId);
    expect(out.status).toBe(403);
    expect(out.body.error).toMatch(/is not an organisation on this network's trust list/);
    // … nor join through it.
    const viaC = await api(
      anna,
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(`#x:${org(2).serverName}`)}`,
      {},
    );
    expect(viaC.status).toBe(403);

    // C's own invite and join attempts are refused by A's proxy at the federation port.
    const coleRoom = (await createRoom(cole)).body.room_id as string;
    const inbound = await invite(cole, coleRoom, anna.userId);
    expect(inbound.status).toBeGreaterThanOrEqual(400);
    const join = await api(
      cole,
      "POST",
      `/_matrix/client/v3/join/${encodeURIComponent(room)}?via=${org(0).serverName}`,
      {},
    );
    expect(join.status).toBeGreaterThanOrEqual(400);

    // Straight at A's federation port: no signature, or an origin off the list.
    const fed = (auth?: string) =>
      fetchInsecure(
        `${org(0).federationUrl}/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(anna.userId)}`,
        auth,
      );
    expect((await fed()).status).toBe(401);
    expect(await fed(`X-Matrix origin="${org(2).serverName}",key="ed25519:a",sig="x"`)).toMatchObject({
      status: 403,
    });
  });

  it("admits a server added to a newly signed list without a restart, and ignores a badly signed list", async () => {
    // Uma, not a verified clinician: Cole (unverified) may invite her once C is trusted.
    const uma = await user(0, "uma");
    const cole = await user(2, "cole");
    const files = join(net().dataDir, "trust");
    const list = JSON.parse(readFileSync(join(files, "list.json"), "utf8")) as Record<string, unknown> & {
      sequence: number;
      organisations: unknown[];
    };
    const operator = JSON.parse(readFileSync(join(files, "operator.jwk.json"), "utf8")) as { kid: string };
    const cKey = JSON.parse(readFileSync(org(2).paths.organisationKey, "utf8")) as { x: string; kid: string };
    const withC = {
      ...list,
      sequence: list.sequence + 1,
      organisations: [
        ...list.organisations,
        {
          server_name: org(2).serverName,
          name: "Test organisation C",
          identifier: "org-c",
          attestation_keys: [{ kty: "OKP", crv: "Ed25519", x: cKey.x, kid: cKey.kid }],
        },
      ],
    };
    writeFileSync(join(files, "list.jws"), signTrustList(withC, loadPrivateKey(operator), operator.kid));
    await waitFor(async () => (await trustStatus(org(0))).servers.includes(org(2).serverName), "A trusts C");
    await waitFor(async () => (await trustStatus(org(1))).servers.includes(org(2).serverName), "B trusts C");

    const coleRoom = (await createRoom(cole)).body.room_id as string;
    const umaClient = await net().client(uma);
    await waitFor(
      async () => (await invite(cole, coleRoom, uma.userId)).status === 200,
      "C's invite accepted by A",
    );
    await waitForMembership(umaClient, coleRoom, "invite", { description: "Cole's invite reaching Uma" });
    await umaClient.joinRoom(coleRoom);

    // A list signed by someone else: refused, and the last good list (with C) stays in force.
    const forger = generateKey("op-forged");
    writeFileSync(
      join(files, "list.jws"),
      signTrustList(
        { ...withC, sequence: withC.sequence + 1, organisations: [] },
        loadPrivateKey(forger.privateJwk),
        "op-forged",
      ),
    );
    await waitFor(
      async () =>
        (await trustStatus(org(0))).sources.some((s) => /unknown key op-forged/.test(s.error ?? "")),
      "A rejects the forged list",
    );
    expect((await trustStatus(org(0))).servers).toContain(org(2).serverName);
    expect(await adminApi(org(0), "policy-module").metrics()).toMatch(/medmesh_trust_list_stale\{[^}]*\} 1/);
  });
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** A request to a federation port (the local CA is not in Node's trust store; these test the gate). */
async function fetchInsecure(
  url: string,
  authorization?: string,
): Promise<{ status: number; response: Response }> {
  const { request } = await import("node:https");
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { rejectUnauthorized: false, headers: authorization ? { authorization } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") headers.set(k, v);
          resolve({
            status: res.statusCode ?? 0,
            response: new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers }),
          });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function generateKeyObject(): KeyObject {
  return generateKeyPairSync("ed25519").privateKey;
}
