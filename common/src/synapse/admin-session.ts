import { createHmac } from "node:crypto";
import { Agent, fetch as patientFetch } from "undici";
import { MatrixRequestError, registerWithSharedSecret } from "./accounts.ts";

export interface SynapseAdmin {
  readonly userId: string | undefined;
  /**
   * A JSON request to Synapse as the MedMesh admin user; Matrix errors become MatrixRequestError.
   * `timeoutMs` (default 15 s) for the few calls that do much work in one request (media deletes).
   */
  request<T>(method: string, path: string, body?: unknown, opts?: { timeoutMs?: number }): Promise<T>;
}

/**
 * MedMesh's own Synapse admin account, for the admin API (account data, rooms, redactions). It
 * needs only the registration shared secret, which the organisation's MedMesh already holds:
 * the password is derived from it, so any instance can log in again after a restart, and the
 * account is created (as admin) on first use. One fixed device keeps logins from piling up.
 *
 * With `appserviceToken` (the policy module's appservice, whose registration lists the account in
 * a non-exclusive namespace) it logs in as that appservice instead of with the password, so it
 * works where the organisation has switched password login off (single sign-on only).
 */
/** Calls given longer than this cannot use the global fetch (undici's default headers timeout). */
const LONG_CALL_MS = 240_000;

// The media repository's admin endpoints (Synapse's workers.md) and MedMesh's module endpoint on it.
const MEDIA_PATH =
  /^\/_synapse\/admin\/v1\/(media\/|purge_media_cache|quarantine_media\/|(room|user)\/[^/]+\/media|users\/[^/]+\/media)|^\/_medmesh\/synapse\/v1\/remote_media\//;

export function createSynapseAdmin(opts: {
  url: string;
  registrationSharedSecret: string;
  localpart?: string;
  appserviceToken?: string;
  /**
   * Synapse's media repository worker, where Synapse runs with workers: the media admin API (and
   * MedMesh's remote-media endpoint, which needs the repository) is served only there.
   */
  mediaUrl?: string;
}): SynapseAdmin {
  const localpart = opts.localpart ?? "medmesh-admin";
  const password = createHmac("sha256", opts.registrationSharedSecret)
    .update(`medmesh admin password for ${localpart}`)
    .digest("base64url");
  let session: Promise<{ token: string; userId: string }> | undefined;
  let patient: Agent | undefined;
  let userId: string | undefined;

  const login = async (): Promise<{ token: string; userId: string }> => {
    const appservice = opts.appserviceToken;
    if (appservice !== undefined) {
      // The account must exist before an appservice may log in as it; created as an admin once.
      await registerWithSharedSecret(opts.url, opts.registrationSharedSecret, {
        localpart,
        password,
        admin: true,
      }).catch((err: unknown) => {
        if (!(err instanceof MatrixRequestError && err.errcode === "M_USER_IN_USE")) throw err;
      });
    }
    const res = await fetch(new URL("/_matrix/client/v3/login", opts.url), {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(appservice === undefined ? {} : { authorization: `Bearer ${appservice}` }),
      },
      body: JSON.stringify({
        ...(appservice === undefined
          ? { type: "m.login.password", password }
          : { type: "m.login.application_service" }),
        identifier: { type: "m.id.user", user: localpart },
        device_id: "MEDMESH_ADMIN",
        initial_device_display_name: "MedMesh policy module",
      }),
    });
    const body = (await res.json()) as {
      access_token?: string;
      user_id?: string;
      errcode?: string;
      error?: string;
    };
    if (res.ok && body.access_token && body.user_id)
      return { token: body.access_token, userId: body.user_id };
    if (body.errcode !== "M_FORBIDDEN" || appservice !== undefined) {
      throw new MatrixRequestError(
        res.status,
        body.errcode ?? "M_UNKNOWN",
        body.error ?? "admin login failed",
      );
    }
    // No such user yet: create it, as an admin.
    const reg = await registerWithSharedSecret(opts.url, opts.registrationSharedSecret, {
      localpart,
      password,
      admin: true,
    });
    return { token: reg.accessToken, userId: reg.userId };
  };

  const send = async <T>(
    method: string,
    path: string,
    body: unknown,
    retry: boolean,
    timeoutMs = 15_000,
  ): Promise<T> => {
    session ??= login().catch((err: unknown) => {
      session = undefined;
      throw err;
    });
    const { token, userId: id } = await session;
    userId = id;
    const init = {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    };
    const url = new URL(
      path,
      opts.mediaUrl !== undefined && MEDIA_PATH.test(path) ? opts.mediaUrl : opts.url,
    );
    // Long calls (a media delete over a day of a large hospital's uploads) outlast fetch's own
    // 300 s wait for response headers: they go through an agent that waits as long as asked.
    const res =
      timeoutMs > LONG_CALL_MS
        ? await patientFetch(url, {
            ...init,
            dispatcher: (patient ??= new Agent({ headersTimeout: 0, bodyTimeout: 0 })),
          })
        : await fetch(url, init);
    const text = await res.text();
    const parsed = (text ? JSON.parse(text) : {}) as T & { errcode?: string; error?: string };
    if (res.status === 401 && retry) {
      session = undefined; // the token was logged out: log in again once
      return send(method, path, body, false, timeoutMs);
    }
    if (!res.ok) {
      throw new MatrixRequestError(
        res.status,
        parsed.errcode ?? "M_UNKNOWN",
        parsed.error ?? text.slice(0, 200),
      );
    }
    return parsed;
  };

  return {
    get userId() {
      return userId;
    },
    request: (method, path, body, o) => send(method, path, body, true, o?.timeoutMs),
  };
}
