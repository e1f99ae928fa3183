import { generateKeyPairSync, randomUUID, type KeyObject } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createListenerApp,
  createLogger,
  createStore,
  jsonBody,
  listen,
  type RunningServer,
  type Store,
} from "@medmesh/common";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpenApiContract } from "../../../tests/harness/openapi.ts";
import { BRIDGE_MIGRATIONS, createBridgeStore } from "../store/index.ts";
import { InteropConfigSchema } from "./config.ts";
import { EVENTS_PATH, mountInteropApi, REQUIRED_COMPONENTS } from "./server.ts";
import { contentDigest, signRequest } from "./signatures.ts";

const contract = new OpenApiContract(join(import.meta.dirname, "../../openapi/interop-v1.yaml"));

describe("interop API: signed, idempotent, owned", () => {
  let store: Store;
  let server: RunningServer;
  let base: string;
  const alpha = generateKeyPairSync("ed25519");
  const beta = generateKeyPairSync("ed25519");
  const jwk = (k: KeyObject) => k.export({ format: "jwk" }) as { kty: "OKP"; crv: "Ed25519"; x: string };

  beforeAll(async () => {
    store = await createStore(
      { type: "pglite", data_dir: mkdtempSync(join(tmpdir(), "medmesh-interop-")) },
      { migrations: BRIDGE_MIGRATIONS },
    );
    const app = createListenerApp(
      {
        log: createLogger("test", "silent"),
        routeGroups: [{ prefix: "/_medmesh/interop/", authenticate: "in-handlers", description: "vendors" }],
      },
      (a) => {
        a.use(jsonBody("10mb"));
        mountInteropApi(a, {
          config: InteropConfigSchema.parse({
            listen: { port: 0 },
            public_url: "https://bridge.hospital-a.example",
            vendors: [
              {
                id: "alpha",
                key_id: "alpha-1",
                public_key: jwk(alpha.publicKey),
                webhook_url: "https://alpha.example/hook",
              },
              {
                id: "beta",
                key_id: "beta-1",
                public_key: jwk(beta.publicKey),
                webhook_url: "https://beta.example/hook",
              },
            ],
            max_body_bytes: 4096,
            signing_key: { key_id: "medmesh-test", private_key_file: "unused.pem" },
          }),
          store: createBridgeStore(store.knex),
          log: createLogger("test", "silent"),
          metrics: new Registry(),
        });
      },
    );
    server = await listen(app, "127.0.0.1", 0);
    base = server.url;
  });
  afterAll(async () => {
    await server.close();
    await store.close();
  });

  /** A request as a vendor sends it: signed over the URI the bridge is known by, with a nonce. */
  const send = async (
    body: unknown,
    o: {
      key?: KeyObject;
      keyId?: string;
      idem?: string;
      nonce?: string;
      raw?: string;
      sign?: boolean;
      created?: number;
    } = {},
  ) => {
    const bytes = Buffer.from(o.raw ?? JSON.stringify(body));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "idempotency-key": o.idem ?? randomUUID(),
      "content-digest": contentDigest(bytes),
    };
    if (o.sign !== false)
      Object.assign(
        headers,
        signRequest(
          { method: "POST", url: `https://bridge.hospital-a.example${EVENTS_PATH}`, headers, body: bytes },
          {
            keyId: o.keyId ?? "alpha-1",
            privateKey: o.key ?? alpha.privateKey,
            components: REQUIRED_COMPONENTS,
            nonce: o.nonce ?? randomUUID(),
            ...(o.created ? { created: o.created } : {}),
          },
        ),
      );
    const res = await fetch(`${base}${EVENTS_PATH}`, { method: "POST", headers, body: bytes });
    await contract.check(`POST ${EVENTS_PATH}`, res.clone()); // every answer as documented
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const inbound = async () =>
    Number((await store.knex("interop_inbound").count<{ n: string }[]>({ n: "*" }))[0]?.n);
  const create = (id: string) => ({
    type: "conversation.create",
    conversation_id: id,
    kind: "direct",
    creator: "u-anna",
    members: ["u-anna", "@ann:hospital-a.example"],
  });
  const message = (conv: string, text = "hello") => ({
    type: "message",
    conversation_id: conv,
    message_id: randomUUID(),
    sender: "u-anna",
    text,
  });

  it("accepts a signed event once, and answers a retry with the same result", async () => {
    expect(await send(create("c-1"))).toMatchObject({ status: 202, body: { accepted: true } });
    const before = await inbound();
    const msg = message("c-1");
    const first = await send(msg, { idem: "m-1" });
    expect(first.status).toBe(202);
    // The vendor retries (new signature, new nonce, same key and body): same answer, stored once.
    expect(await send(msg, { idem: "m-1" })).toEqual(first);
    expect(await inbound()).toBe(before + 1);
    // The same key for another request is a conflict.
    expect(await send(message("c-1", "other"), { idem: "m-1" })).toMatchObject({
      status: 409,
      body: { errcode: "ORG.MEDMESH.IDEMPOTENCY_CONFLICT" },
    });
  });

  it("refuses unsigned, wrongly signed, replayed, stale, malformed, oversized and foreign requests, storing nothing", async () => {
    await send(create("c-beta"), { key: beta.privateKey, keyId: "beta-1" });
    const before = await inbound();
    const nonce = randomUUID();
    expect((await send(message("c-1"), { nonce })).status).toBe(202);
    const after = before + 1;
    const cases: [string, Awaited<ReturnType<typeof send>>, number, string][] = [
      ["unsigned", await send(message("c-1"), { sign: false }), 401, "M_UNAUTHORIZED"],
      [
        "signed with another key",
        await send(message("c-1"), { key: beta.privateKey }),
        401,
        "M_UNAUTHORIZED",
      ],
      ["unknown key id", await send(message("c-1"), { keyId: "gamma-1" }), 401, "M_UNAUTHORIZED"],
      ["replayed nonce", await send(message("c-1"), { nonce }), 401, "M_UNAUTHORIZED"],
      [
        "stale",
        await send(message("c-1"), { created: Math.floor(Date.now() / 1000) - 3600 }),
        401,
        "M_UNAUTHORIZED",
      ],
      ["not JSON", await send(undefined, { raw: "{not json" }), 400, "M_NOT_JSON"],
      ["not an event", await send({ type: "message", conversation_id: "c-1" }), 400, "M_BAD_JSON"],
      ["oversized", await send(message("c-1", "x".repeat(5000))), 413, "M_TOO_LARGE"],
      ["another vendor's conversation", await send(message("c-beta")), 403, "M_FORBIDDEN"],
      ["unknown conversation", await send(message("c-none")), 404, "M_NOT_FOUND"],
      ["taking over a conversation", await send(create("c-beta")), 403, "M_FORBIDDEN"],
    ];
    for (const [what, res, status, errcode] of cases) {
      expect({ what, status: res.status, errcode: res.body.errcode }).toEqual({ what, status, errcode });
      expect(typeof res.body.error, what).toBe("string");
    }
    expect(await inbound()).toBe(after);
  });
});
