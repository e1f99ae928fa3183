import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { MatrixClient } from "matrix-js-sdk";
import { startReferenceVendor } from "../../bridge/src/vendor/index.ts";
import { freePorts } from "./ports.ts";
import { nextRoom } from "./wait.ts";

type Running = Awaited<ReturnType<typeof startReferenceVendor>>;

/** The reference messenger (bridge/src/vendor) as a vendor of an organisation's bridge. */
export interface ReferenceVendor {
  /** The entry for the organisation's `bridge_vendors`. */
  readonly settings: Record<string, unknown>;
  /** Starts it (again, on the same port and data file) against the organisation's interop API. */
  readonly start: () => Promise<void>;
  readonly stop: () => Promise<void>;
  /** Its REST API (`/api…`); a refusal throws with the answer. */
  readonly api: <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => Promise<T>;
  /** The texts of a conversation's messages that reached the vendor ("in") or left it ("out"). */
  readonly texts: (conversation: string, direction: "in" | "out") => Promise<string[]>;
  /** Vendor user Anna Smit opens a direct conversation with the client's user, who joins its room. */
  readonly directWithAnna: (client: MatrixClient) => Promise<{ conversation: string; roomId: string }>;
}

/**
 * A vendor `id` with a key of its own and a webhook on a free port; `where` names, once the
 * network runs, the data directory and the organisation whose bridge it talks to.
 */
export async function referenceVendor(
  where: () => {
    dataDir: string;
    org: { bridgeInteropUrl: string; org: { id: string }; paths: { bridgeSigningKey: string } };
  },
  id = "refmsg",
): Promise<ReferenceVendor> {
  const keys = generateKeyPairSync("ed25519");
  const [port] = (await freePorts(1)) as [number];
  let running: Running | undefined;
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    if (!running) throw new Error("the reference vendor is not running");
    const res = await fetch(`${running.url}/api${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as T;
    if (!res.ok)
      throw new Error(`vendor API ${method} ${path}: ${String(res.status)} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    settings: {
      id,
      key_id: `${id}-1`,
      public_key: keys.publicKey.export({ format: "jwk" }),
      webhook_url: `http://127.0.0.1:${String(port)}/webhook`,
    },
    start: async () => {
      const { dataDir, org } = where();
      running = await startReferenceVendor({
        dataFile: join(dataDir, `${id}.sqlite`),
        listen: { host: "127.0.0.1", port },
        vendorId: id,
        keyId: `${id}-1`,
        privateKey: keys.privateKey,
        medmesh: {
          url: org.bridgeInteropUrl,
          keyId: `medmesh-${org.org.id}`,
          publicKey: createPublicKey(createPrivateKey(readFileSync(org.paths.bridgeSigningKey))).export({
            format: "jwk",
          }),
        },
      });
    },
    stop: async () => {
      await running?.stop();
    },
    api,
    texts: async (conversation, direction) =>
      (
        await api<{ events: { direction: string; event: { type: string; text?: string } }[] }>(
          "GET",
          `/conversations/${encodeURIComponent(conversation)}/events`,
        )
      ).events
        .filter((e) => e.direction === direction && e.event.type === "message")
        .map((e) => e.event.text ?? ""),
    directWithAnna: async (client) => {
      await api("POST", "/users", { id: "anna", display_name: "Anna Smit" });
      const invited = nextRoom(client);
      const { conversation_id } = await api<{ conversation_id: string }>("POST", "/conversations", {
        kind: "direct",
        creator: "anna",
        members: ["anna", client.getSafeUserId()],
      });
      const roomId = await invited;
      await client.joinRoom(roomId);
      return { conversation: conversation_id, roomId };
    },
  };
}
