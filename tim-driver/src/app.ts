import express, { Router, type Express, type Request } from "express";
import type { Logger } from "pino";
import { decodeRecoveryKey, encodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/index.js";
import type { Housekeeping } from "./cleanup.ts";
import { openWithRecoveryKey } from "./key-backup.ts";
import type { TimDriverConfig } from "./config.ts";
import type { DevicePool } from "./devices.ts";
import { asyncRoute, badRequest, driverErrorMiddleware, notFound } from "./errors.ts";
import { MediaFiles, mountMedia } from "./media.ts";
import { mountMessages } from "./messages.ts";
import { changeList, modeOf, permissionConfigType, readConfig, setMode } from "./permission-config.ts";
import { mountRooms } from "./rooms.ts";
import { mountUnimplemented } from "./unimplemented.ts";

export const TEST_DRIVER_API_VERSION = "2.3.0";

const param = (req: Request, name: string): string => String(req.params[name]);

export function createDriverApp(
  config: TimDriverConfig,
  pool: DevicePool,
  housekeeping: Housekeeping,
  log: Logger,
): Express {
  const app = express();
  app.disable("x-powered-by");
  // authorizationMode bodies are bare JSON strings ("BlockAll").
  app.use(express.json({ strict: false, limit: "1mb", type: ["application/json", "text/json"] }));
  const router = Router();
  const media = new MediaFiles();
  const permissions = permissionConfigType(config.profile);

  router.get("/", (_req, res) => {
    res.json({
      title: "MedMesh TI-Messenger test driver",
      description:
        "Drives MedMesh devices (matrix-js-sdk with Rust crypto) for gematik's TI-Messenger test suite",
      homeserver: config.homeserver.server_name,
      testDriverVersion: TEST_DRIVER_API_VERSION,
      contact: { name: "MedMesh" },
      clientInfo: {
        name: "MedMesh test client",
        version: "0.1.0",
        matrixVersion: "1.11",
        applicationType: "Native",
        osInfo: { operatingSystem: "Linux" },
        canSendMessages: true,
        canAdministrateFhirOrganization: false,
        canAdministrateFhirPractitioner: false,
        isPro: config.profile === "tim-pro",
        isInsurance: config.profile === "tim-epa",
        isVersionThree: true,
        isReferenceImplementation: false,
      },
      fachdienstInfo: {
        name: "MedMesh",
        version: "0.1.0",
        description: "Synapse with MedMesh's policy module",
      },
    });
  });

  router.post(
    "/",
    asyncRoute(async (_req, res) => {
      const started = Date.now();
      await pool.stop();
      const loggedOut = Date.now();
      await housekeeping.clean(pool.devices.map((d) => d.account));
      log.info({ logoutMs: loggedOut - started, roomsMs: Date.now() - loggedOut }, "cleanup done");
      res.status(200).end();
    }),
  );

  router.get("/devices", (_req, res) => {
    const now = Date.now();
    res.json({ devices: pool.devices.map((d) => d.info(now)) });
  });

  router.post("/devices/:deviceId/claim", (req, res) => {
    const device = pool.get(param(req, "deviceId"));
    const body = (req.body ?? {}) as { claimerName?: unknown; claimFor?: unknown };
    if (typeof body.claimerName !== "string" || body.claimerName === "")
      throw badRequest("claimerName is required");
    if (typeof body.claimFor !== "number" || !Number.isInteger(body.claimFor) || body.claimFor < 60)
      throw badRequest("claimFor must be a whole number of seconds, at least 60");
    res.json(pool.claim(device, body.claimerName, body.claimFor));
  });

  router.post("/devices/:deviceId/unclaim", (req, res) => {
    res.json(pool.unclaim(pool.get(param(req, "deviceId"))));
  });

  const account = (req: Request) => {
    const device = pool.use(param(req, "deviceId"));
    const session = device.requireSession();
    const mine = session.creds.username === device.account.username;
    return {
      mxid: session.userId,
      username: session.creds.username,
      password: session.creds.password,
      displayName: mine ? device.account.displayName : session.creds.username,
    };
  };

  router.get("/devices/:deviceId/account", (req, res) => {
    res.json(account(req));
  });

  router.post(
    "/devices/:deviceId/login",
    asyncRoute(async (req, res) => {
      const device = pool.use(param(req, "deviceId"));
      const body = (req.body ?? {}) as { username?: unknown; password?: unknown };
      let creds;
      if (body.username !== undefined || body.password !== undefined) {
        if (typeof body.username !== "string" || typeof body.password !== "string")
          throw badRequest("username and password must both be strings");
        creds = { username: body.username, password: body.password };
      }
      await pool.login(device, creds);
      res.json(account(req));
    }),
  );

  router.post(
    "/devices/:deviceId/logout",
    asyncRoute(async (req, res) => {
      const device = pool.use(param(req, "deviceId"));
      device.requireSession();
      await pool.logout(device);
      res.status(200).end();
    }),
  );

  router.get("/devices/:deviceId/account/key", (req, res) => {
    const session = pool.use(param(req, "deviceId")).requireSession();
    const key = pool.keys.get(session.userId);
    if (!key) throw badRequest(`no recovery key is known for ${session.userId}; import one first`);
    res.json({ mxId: { mxid: session.userId }, key: encodeRecoveryKey(key) });
  });

  router.post(
    "/devices/:deviceId/account/key",
    asyncRoute(async (req, res) => {
      const session = pool.use(param(req, "deviceId")).requireSession();
      const given = (req.body as { key?: unknown } | undefined)?.key;
      if (typeof given !== "string") throw badRequest("key is required");
      let key: Uint8Array;
      try {
        key = decodeRecoveryKey(given);
      } catch (err) {
        throw badRequest(`key is not a recovery key: ${err instanceof Error ? err.message : String(err)}`);
      }
      pool.keys.set(session.userId, key);
      await openWithRecoveryKey(session.client, pool.keys, log);
      res.status(204).end();
    }),
  );

  router.get(
    "/devices/:deviceId/homeserver/search",
    asyncRoute(async (req, res) => {
      const { client } = pool.use(param(req, "deviceId")).requireSession();
      const displayName = typeof req.query.displayName === "string" ? req.query.displayName : undefined;
      const mxId = typeof req.query.mxId === "string" ? req.query.mxId : undefined;
      const term = mxId ?? displayName;
      if (!term) throw badRequest("give displayName or mxId");
      const { results } = await client.searchUserDirectory({ term, limit: 50 });
      const found = results
        .filter((r) => (mxId ? r.user_id === mxId : true))
        .filter((r) =>
          displayName ? (r.display_name ?? "").toLowerCase().includes(displayName.toLowerCase()) : true,
        )
        .map((r) => ({ mxId: r.user_id, ...(r.display_name ? { displayName: r.display_name } : {}) }));
      res.json({ totalSearchResults: found.length, searchResults: found });
    }),
  );

  router.get(
    "/devices/:deviceId/authorizationMode",
    asyncRoute(async (req, res) => {
      const { client } = pool.use(param(req, "deviceId")).requireSession();
      res.json(modeOf(await readConfig(client, permissions)));
    }),
  );
  router.post(
    "/devices/:deviceId/authorizationMode",
    asyncRoute(async (req, res) => {
      const { client } = pool.use(param(req, "deviceId")).requireSession();
      res.json(await setMode(client, permissions, req.body));
    }),
  );
  for (const [path, list] of [
    ["/devices/:deviceId/allowedUsers", "allowed"],
    ["/devices/:deviceId/blockedUsers", "blocked"],
  ] as const) {
    router.get(
      path,
      asyncRoute(async (req, res) => {
        const { client } = pool.use(param(req, "deviceId")).requireSession();
        res.json(await changeList(client, permissions, list, "read"));
      }),
    );
    router.post(
      path,
      asyncRoute(async (req, res) => {
        const { client } = pool.use(param(req, "deviceId")).requireSession();
        res.json(await changeList(client, permissions, list, "add", req.body));
      }),
    );
    router.delete(
      path,
      asyncRoute(async (req, res) => {
        const { client } = pool.use(param(req, "deviceId")).requireSession();
        await changeList(client, permissions, list, "remove", req.body);
        res.status(204).end();
      }),
    );
  }

  mountRooms(router, pool);
  mountMessages(router, pool, media);
  mountMedia(router, pool, media, config.max_upload_bytes);
  mountUnimplemented(router);
  app.use(router);
  app.use((req, _res, next) => {
    next(notFound(`${req.method} ${req.path}`));
  });
  app.use(driverErrorMiddleware(log));
  return app;
}
