import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { canonicalJson } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";

/**
 * A federation client that speaks as an organisation's Synapse: it signs requests (X-Matrix) and
 * events with that Synapse's own signing key, so a test can send what a (misbehaving) server could
 * send — invites built by hand, PDUs inside /send — and see what the receiving side does.
 */
export interface FederationClient {
  readonly serverName: string;
  /**
   * A signed m.room.member invite event and its event ID, in the format of room version 10, or of
   * room version 1 (the only one federation /v1/invite carries: the event ID is part of the event).
   */
  inviteEvent(o: { roomId: string; sender: string; invitee: string; roomVersion?: "1" | "10" }): {
    event: Signed;
    eventId: string;
  };
  /** A signed PDU of any type (room version 10 format) and its event ID. */
  event(fields: Record<string, unknown>): { event: Signed; eventId: string };
  send(
    to: RunningOrganisation,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }>;
}

type Signed = Record<string, unknown>;

const b64 = (buf: Buffer): string => buf.toString("base64").replace(/=+$/, "");

export function federationClientOf(org: RunningOrganisation): FederationClient {
  const [alg, version, seed] = readFileSync(org.paths.signingKey, "utf8").trim().split(/\s+/);
  if (alg !== "ed25519" || !version || !seed)
    throw new Error(`unexpected signing key in ${org.paths.signingKey}`);
  const key = ed25519FromSeed(Buffer.from(seed, "base64"));
  const keyId = `ed25519:${version}`;
  const serverName = org.serverName;
  const signJson = (value: unknown): string => b64(sign(null, Buffer.from(canonicalJson(value)), key));

  const event = (fields: Record<string, unknown>): { event: Signed; eventId: string } => {
    const unsigned: Signed = { origin_server_ts: Date.now(), depth: 10, ...fields };
    const hashed = { ...unsigned, hashes: { sha256: b64(sha256(canonicalJson(unsigned))) } };
    const redacted = redactV10(hashed);
    const signed = { ...hashed, signatures: { [serverName]: { [keyId]: signJson(redacted) } } };
    const reference = b64(sha256(canonicalJson(redacted)))
      .replaceAll("+", "-")
      .replaceAll("/", "_");
    return { event: signed, eventId: `$${reference}` };
  };

  return {
    serverName,
    event,
    inviteEvent: ({ roomId, sender, invitee, roomVersion = "10" }) => {
      const fields = {
        type: "m.room.member",
        state_key: invitee,
        sender,
        room_id: roomId,
        content: { membership: "invite" },
      };
      const made = (name: string) => `$${b64(sha256(roomId + name)).replace(/[+/]/g, "x")}`;
      if (roomVersion === "10") {
        return event({ ...fields, prev_events: [made("prev")], auth_events: [made("create")] });
      }
      // Version 1: event IDs are "$local:server", references carry the referenced event's hash.
      const v1 = (name: string) => [`${made(name)}:${serverName}`, { sha256: b64(sha256(name)) }];
      const eventId = `${made("invite")}:${serverName}`;
      const signed = event({
        ...fields,
        event_id: eventId,
        origin: serverName,
        prev_events: [v1("prev")],
        auth_events: [v1("create")],
      }).event;
      return { event: signed, eventId };
    },
    async send(to, method, path, body) {
      const auth = {
        method,
        uri: path,
        origin: serverName,
        destination: to.serverName,
        ...(body === undefined ? {} : { content: body }),
      };
      const header = `X-Matrix origin="${serverName}",destination="${to.serverName}",key="${keyId}",sig="${signJson(auth)}"`;
      const url = new URL(path, to.federationUrl);
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          url,
          {
            method,
            rejectUnauthorized: false, // the local CA; the test is about what happens after TLS
            headers: {
              authorization: header,
              ...(payload === undefined
                ? {}
                : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
            },
          },
          (res) => {
            let text = "";
            res.on("data", (d: Buffer) => (text += d.toString()));
            res.on("end", () => {
              let parsed: unknown = text;
              try {
                parsed = JSON.parse(text);
              } catch {
                // not JSON: kept as text for the assertion message
              }
              resolve({ status: res.statusCode ?? 0, body: parsed });
            });
          },
        );
        req.on("error", reject);
        req.end(payload);
      });
    },
  };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function ed25519FromSeed(seed: Buffer): KeyObject {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
}

/** The redaction algorithm of room versions 6–10: what signatures and event IDs cover. */
function redactV10(event: Signed): Signed {
  const keep = [
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "depth",
    "prev_events",
    "auth_events",
    "origin",
    "origin_server_ts",
    "membership",
  ];
  const out: Signed = {};
  for (const k of keep) if (k in event) out[k] = event[k];
  const content = (event.content ?? {}) as Record<string, unknown>;
  out.content =
    event.type === "m.room.member"
      ? pick(content, ["membership", "join_authorised_via_users_server"])
      : event.type === "m.room.join_rules"
        ? pick(content, ["join_rule", "allow"])
        : event.type === "m.room.history_visibility"
          ? pick(content, ["history_visibility"])
          : event.type === "m.room.create"
            ? pick(content, ["creator"])
            : event.type === "m.room.power_levels"
              ? pick(content, [
                  "ban",
                  "events",
                  "events_default",
                  "kick",
                  "redact",
                  "state_default",
                  "users",
                  "users_default",
                ])
              : {};
  return out;
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}
