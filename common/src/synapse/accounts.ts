import { createHmac } from "node:crypto";

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

export interface NewUser {
  localpart: string;
  password: string;
  admin?: boolean;
  displayName?: string;
}

/**
 * Registers a user through Synapse's shared-secret admin API (`/_synapse/admin/v1/register`):
 * a nonce, then an HMAC-SHA1 over nonce, user, password and admin flag keyed by the secret.
 */
export async function registerWithSharedSecret(
  synapseUrl: string,
  secret: string,
  user: NewUser,
): Promise<RegisteredUser> {
  const endpoint = new URL("/_synapse/admin/v1/register", synapseUrl);
  const nonceRes = await fetch(endpoint);
  if (!nonceRes.ok)
    throw new Error(`registration nonce request failed: ${String(nonceRes.status)} ${await nonceRes.text()}`);
  const { nonce } = (await nonceRes.json()) as { nonce: string };
  const admin = user.admin ?? false;
  const mac = createHmac("sha1", secret)
    .update([nonce, user.localpart, user.password, admin ? "admin" : "notadmin"].join("\0"))
    .digest("hex");
  const res = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      nonce,
      username: user.localpart,
      password: user.password,
      admin,
      mac,
      ...(user.displayName === undefined ? {} : { displayname: user.displayName }),
    }),
  });
  return sessionFrom(res, "registration failed");
}

export async function loginWithPassword(
  synapseUrl: string,
  localpart: string,
  password: string,
): Promise<RegisteredUser> {
  const res = await fetch(new URL("/_matrix/client/v3/login", synapseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: localpart },
      password,
    }),
  });
  return sessionFrom(res, "login failed");
}

/** Registers the user, or logs in when it already exists (a restarted local network keeps its users). */
export async function ensureUser(synapseUrl: string, secret: string, user: NewUser): Promise<RegisteredUser> {
  try {
    return await registerWithSharedSecret(synapseUrl, secret, user);
  } catch (err) {
    if (err instanceof MatrixRequestError && err.errcode === "M_USER_IN_USE") {
      return loginWithPassword(synapseUrl, user.localpart, user.password);
    }
    throw err;
  }
}

/**
 * Creates a user of an appservice's namespace (a no-op when it exists): Synapse lets an appservice
 * act as such a user only once it is registered.
 */
export async function ensureAppserviceUser(
  synapseUrl: string,
  asToken: string,
  localpart: string,
): Promise<void> {
  const res = await fetch(new URL("/_matrix/client/v3/register", synapseUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.application_service", username: localpart, inhibit_login: true }),
    signal: AbortSignal.timeout(15_000),
  });
  if (res.ok) return;
  const body = (await res.json()) as { errcode?: string; error?: string };
  if (body.errcode !== "M_USER_IN_USE")
    throw new MatrixRequestError(
      res.status,
      body.errcode ?? "M_UNKNOWN",
      body.error ?? `could not register ${localpart}`,
    );
}

/** Both register and login answer with a session, or with a Matrix error. */
async function sessionFrom(res: Response, failure: string): Promise<RegisteredUser> {
  const body = (await res.json()) as {
    user_id?: string;
    access_token?: string;
    device_id?: string;
    errcode?: string;
    error?: string;
  };
  if (!res.ok || !body.user_id || !body.access_token) {
    throw new MatrixRequestError(res.status, body.errcode ?? "M_UNKNOWN", body.error ?? failure);
  }
  return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id ?? "" };
}

export class MatrixRequestError extends Error {
  override name = "MatrixRequestError";
  readonly status: number;
  readonly errcode: string;
  constructor(status: number, errcode: string, message: string) {
    super(`${errcode} (${String(status)}): ${message}`);
    this.status = status;
    this.errcode = errcode;
  }
}
