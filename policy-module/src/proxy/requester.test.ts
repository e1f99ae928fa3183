import { createServer, IncomingMessage, type Server } from "node:http";
import { Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Refusal } from "./context.ts";
import { accessTokenOf, createRequesterCache } from "./requester.ts";

// Synapse's whoami as far as the proxy relies on it: an appservice token may assert a user in its
// namespace with ?user_id=; an ordinary user's token ignores the parameter.
let server: Server;
let url: URL;
const asked: string[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    asked.push(`${req.headers.authorization ?? ""} ${u.search}`);
    const asserted = u.searchParams.get("user_id");
    const token = req.headers.authorization?.slice(7);
    const body =
      token === "as-token"
        ? { user_id: asserted ?? "@bridge:hs" }
        : token === "alice-token"
          ? { user_id: "@alice:hs", device_id: "A" }
          : undefined;
    res.writeHead(body ? 200 : 401, { "content-type": "application/json" });
    res.end(JSON.stringify(body ?? { errcode: "M_UNKNOWN_TOKEN" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = new URL(`http://127.0.0.1:${String((server.address() as AddressInfo).port)}`);
});
afterAll(
  () =>
    new Promise<void>((r) =>
      server.close(() => {
        r();
      }),
    ),
);

describe("requester cache", () => {
  it("asks Synapse with the asserted user, so an appservice's users are who Synapse takes them for", async () => {
    const cache = createRequesterCache(url);
    expect(await cache.whoami("as-token", "@bridge_v_anna:hs")).toEqual({ userId: "@bridge_v_anna:hs" });
    expect(await cache.whoami("as-token", "@bridge_v_ben:hs")).toEqual({ userId: "@bridge_v_ben:hs" });
    expect(await cache.whoami("as-token")).toEqual({ userId: "@bridge:hs" });
    // An ordinary token cannot become someone else by adding the parameter.
    expect(await cache.whoami("alice-token", "@bob:hs")).toEqual({ userId: "@alice:hs", deviceId: "A" });
    expect(await cache.whoami("nobody", "@bob:hs")).toBeUndefined();
  });

  it("remembers each (token, asserted user) pair on its own", async () => {
    const cache = createRequesterCache(url);
    asked.length = 0;
    for (let i = 0; i < 3; i++) {
      await cache.whoami("as-token", "@bridge_v_anna:hs");
      await cache.whoami("as-token", "@bridge_v_ben:hs");
    }
    expect(asked.sort()).toEqual([
      "Bearer as-token ?user_id=%40bridge_v_anna%3Ahs",
      "Bearer as-token ?user_id=%40bridge_v_ben%3Ahs",
    ]);
  });
});

describe("access token of a request", () => {
  const of = (authorization: string | undefined, query = ""): string | undefined | Refusal => {
    const req = new IncomingMessage(new Socket());
    if (authorization !== undefined) req.headers.authorization = authorization;
    try {
      return accessTokenOf(req, new URL(`http://proxy.invalid/x${query}`));
    } catch (err) {
      if (err instanceof Refusal) return err;
      throw err;
    }
  };
  const refusal = (r: string | undefined | Refusal): string =>
    r instanceof Refusal ? `${String(r.status)} ${r.errcode}` : `token ${String(r)}`;

  it("reads the Bearer header or the access_token parameter, as Synapse does", () => {
    expect(of("Bearer syt_abc_123")).toBe("syt_abc_123");
    expect(of(undefined, "?access_token=syt_abc")).toBe("syt_abc");
    expect(of(undefined)).toBeUndefined();
  });

  it("refuses malformed credentials with a 401 before anyone is asked", () => {
    // Node hands header bytes 0x80-0xFF over as latin1 characters.
    expect(refusal(of("Bearer \u00ff"))).toBe("401 M_UNKNOWN_TOKEN");
    expect(refusal(of("Bearer t\u00c3\u00b6k"))).toBe("401 M_UNKNOWN_TOKEN");
    expect(refusal(of("Bearer a b"))).toBe("401 M_UNKNOWN_TOKEN");
    expect(refusal(of(undefined, "?access_token=%FF"))).toBe("401 M_UNKNOWN_TOKEN");
    expect(refusal(of(undefined, "?access_token=%E2%82%AC"))).toBe("401 M_UNKNOWN_TOKEN");
    expect(refusal(of(undefined, "?access_token=a%00b"))).toBe("401 M_UNKNOWN_TOKEN");
    // Empty, or not a bearer token at all: there is no token.
    expect(refusal(of("Bearer"))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of("Bearer "))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of(""))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of("bearer tok"))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of("Basic dXNlcjpwdw=="))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of(undefined, "?access_token="))).toBe("401 M_MISSING_TOKEN");
    // Two credentials: Synapse refuses the mix, so does the proxy.
    expect(refusal(of("Bearer a", "?access_token=b"))).toBe("401 M_MISSING_TOKEN");
    expect(refusal(of(undefined, "?access_token=a&access_token=b"))).toBe("401 M_MISSING_TOKEN");
  });
});
