import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, createStore } from "@medmesh/common";
import { describe, expect, it } from "vitest";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import type { RemoteAnswer, SignedAttestation } from "./remote.ts";
import { createRemoteBadgeRefresher } from "./remote-badges.ts";
import { revocationTables } from "./revocation-store.ts";

const USER = "@ann:a.example";
const attestation = (expSeconds: number): SignedAttestation => ({
  iss: "a.example",
  sub: USER,
  profession: "physician",
  registry: "BIG",
  verified_at: "2026-01-01T00:00:00Z",
  exp: expSeconds,
  iat: Math.floor(Date.now() / 1000),
  jws: "x.y.z",
});

describe("remote badges refreshed in the background", () => {
  it("asks again half-way to expiry, rewrites a renewed or lost badge, and keeps a valid one while the issuer is unreachable", async () => {
    const dir = await mkdtemp(join(tmpdir(), "medmesh-remote-badges-"));
    const store = await createStore({ type: "pglite", data_dir: dir }, { migrations: IDENTITY_MIGRATIONS });
    try {
      const tables = revocationTables(store.knex);
      let answer: RemoteAnswer = { attestation: undefined, definitive: true };
      const rebadged: (boolean | undefined)[] = [];
      const refresher = createRemoteBadgeRefresher({
        tables,
        leases: store.leases,
        refresh: () => Promise.resolve(answer),
        // As the badge does: what it writes is recorded as shown.
        rebadge: async () => {
          const a = answer.attestation;
          const expiresAt = a ? new Date(a.exp * 1000) : null;
          rebadged.push(a !== undefined);
          await tables.showBadge(
            USER,
            a !== undefined,
            expiresAt,
            refresher.nextCheck(a !== undefined, expiresAt),
          );
        },
        refreshMs: 60_000,
        tickMs: 1000,
        log: createLogger("test", "silent"),
      });
      const now = Date.now();
      const exp = new Date(Math.floor(now / 1000) * 1000 + 4000);
      // Shown verified, expiring in ~4 s: asked again half-way, well before the refresh interval.
      const next = refresher.nextCheck(true, exp, now);
      expect(next.getTime()).toBeLessThanOrEqual(now + 2000);
      expect(next.getTime()).toBeGreaterThan(now);
      await tables.showBadge(USER, true, exp, new Date(now - 1)); // due now

      // Unreachable while still valid: no rewrite, asked again before it runs out.
      answer = { attestation: undefined, definitive: false };
      await refresher.run();
      expect(rebadged).toEqual([]);
      const kept = await tables.badge(USER);
      expect(kept).toEqual({ verified: true, expires_at: exp });

      // The issuer answers with a fresh attestation: rewritten with the later expiry.
      answer = { attestation: attestation(exp.getTime() / 1000 + 300), definitive: true };
      await tables.showBadge(USER, true, exp, new Date(Date.now() - 1));
      await refresher.run();
      expect(rebadged).toEqual([true]);

      // Run out and unreachable: the badge says unverified.
      const past = new Date(Date.now() - 1000);
      await tables.showBadge(USER, true, past, new Date(Date.now() - 1));
      answer = { attestation: undefined, definitive: false };
      await refresher.run();
      expect(rebadged).toEqual([true, false]);
      expect((await tables.badge(USER))?.verified).toBe(false);
      // Unverified badges are asked about again at the refresh interval.
      expect(await tables.badgesDue(new Date(Date.now() + 30_000), 10)).toEqual([]);
      expect(await tables.badgesDue(new Date(Date.now() + 61_000), 10)).toEqual([USER]);
      await refresher.stop();
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    }
  });
});
