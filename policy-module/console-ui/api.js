// The console's API client: the session cookie travels by itself (same origin, httpOnly); the
// CSRF token is kept in memory only and sent on every state-changing request.
export const BASE = "/_medmesh/console/api/v1";
let csrf = "";
/** @type {(err: ApiError) => void} */
let onExpired = () => {};

export const setCsrf = (/** @type {string} */ token) => (csrf = token);
export const onSessionExpired = (/** @type {(err: ApiError) => void} */ f) => (onExpired = f);

export class ApiError extends Error {
  /** @param {number} status @param {string} errcode @param {string} message */
  constructor(status, errcode, message) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

/** @param {Response} res @returns {Promise<never>} */
async function fail(res) {
  /** @type {{ errcode?: string, error?: string }} */
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  const err = new ApiError(res.status, body.errcode ?? "M_UNKNOWN", body.error ?? res.statusText);
  if (res.status === 401) onExpired(err);
  throw err;
}

/**
 * @param {"GET" | "POST" | "PUT" | "DELETE"} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>} the answer, as console.yaml documents it (types.d.ts)
 */
export async function api(method, path, body) {
  const res = await fetch(`${BASE}${path}`, {
    method,
    credentials: "same-origin",
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(method === "GET" ? {} : { "x-medmesh-csrf": csrf }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) await fail(res);
  return res.json();
}

/** A binary answer (the ID document) as an object URL, revoked by the caller when it leaves the page. */
/** @param {string} path */
export async function blobUrl(path) {
  const res = await fetch(`${BASE}${path}`, { credentials: "same-origin", cache: "no-store" });
  if (!res.ok) await fail(res);
  return URL.createObjectURL(await res.blob());
}

/**
 * Sign-in: Matrix password login through the organisation's proxy, the token traded for a console
 * session, then the Matrix token logged out again (the console keeps only its own session).
 */
/** Signs in with a Matrix login, trades its token for a console session, and logs the token out. */
/** @param {Record<string, unknown>} loginBody @returns {Promise<import("./types").Session>} */
async function exchange(loginBody) {
  const login = await fetch("/_matrix/client/v3/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...loginBody, initial_device_display_name: "MedMesh console sign-in" }),
  });
  const answer = await login.json();
  if (!login.ok) throw new ApiError(login.status, answer.errcode, answer.error);
  const auth = { authorization: `Bearer ${answer.access_token}` };
  try {
    const res = await fetch(`${BASE}/session`, { method: "POST", headers: auth, credentials: "same-origin" });
    const session = await res.json();
    if (!res.ok) throw new ApiError(res.status, session.errcode, session.error);
    setCsrf(session.csrf_token);
    return session;
  } finally {
    await fetch("/_matrix/client/v3/logout", { method: "POST", headers: auth }).catch(() => undefined);
  }
}

export const signIn = (/** @type {string} */ user, /** @type {string} */ password) =>
  exchange({ type: "m.login.password", identifier: { type: "m.id.user", user }, password });

/** The login token Synapse hands back after the organisation's single sign-on. */
export const signInWithToken = (/** @type {string} */ token) => exchange({ type: "m.login.token", token });

/** How this server lets people sign in: password, and the single sign-on providers. */
export async function loginFlows() {
  const res = await fetch("/_matrix/client/v3/login");
  const { flows = [] } = res.ok ? await res.json() : {};
  const sso = flows.find((f) => f.type === "m.login.sso");
  return {
    password: flows.some((f) => f.type === "m.login.password"),
    providers: sso?.identity_providers ?? [],
  };
}

/** Where the browser goes for the provider's sign-in; it comes back to the console with a login token. */
export const ssoUrl = (/** @type {string} */ idpId) =>
  `/_matrix/client/v3/login/sso/redirect/${encodeURIComponent(idpId)}?redirectUrl=${encodeURIComponent(
    `${location.origin}/_medmesh/console/sign-in`,
  )}`;

/** @returns {Promise<import("./types").Session | undefined>} */
export async function currentSession() {
  const res = await fetch(`${BASE}/session`, { credentials: "same-origin" });
  if (!res.ok) return undefined;
  const session = await res.json();
  setCsrf(session.csrf_token);
  return session;
}

/** What a failure says, whatever was thrown. */
export const messageOf = (/** @type {unknown} */ err) => (err instanceof Error ? err.message : String(err));
