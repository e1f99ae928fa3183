import { parseArgs } from "node:util";

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** The password (MEDMESH_ADMIN_PASSWORD by default): never a command-line argument. */
  password?: () => string | undefined;
}

const USAGE = `usage: medmesh admin <command> --url CLIENT-URL --user NAME [options]
  the admin console's API (docs/console.md) from scripts; signs in with the admin's own Matrix
  account (password from MEDMESH_ADMIN_PASSWORD), runs one command, signs out again
commands:
  whoami                                 the signed-in user and role
  reviews                                ID documents waiting for review
  approve USER | reject USER --reason R  decide a review (the user is told the reason)
  users [--q TEXT]                       search the organisation's users
  devices USER                           a user's devices and history
  wipe USER --yes                        remote wipe: delete every device and access token
  audit [--actor A] [--action X] [--object O] [--from T] [--to T] [--format json|csv]
                                         export the audit records with the hash-chain proof
  verify-chain                           verify the audit log's chain and anchor
  status                                 trust list, retention, health
exit code: 0 done, 1 refused or failed, 2 called wrongly
`;

class UsageError extends Error {}

interface Session {
  base: string;
  cookie: string;
  csrf: string;
}

async function signIn(url: string, user: string, password: string): Promise<Session> {
  const login = await fetch(new URL("/_matrix/client/v3/login", url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user }, password }),
  });
  const answer = (await login.json()) as { access_token?: string; error?: string };
  if (!login.ok || !answer.access_token)
    throw new Error(`sign-in failed: ${answer.error ?? String(login.status)}`);
  const auth = { authorization: `Bearer ${answer.access_token}` };
  try {
    const base = new URL("/_medmesh/console/api/v1", url).toString();
    const res = await fetch(`${base}/session`, { method: "POST", headers: auth });
    const body = (await res.json()) as { csrf_token?: string; error?: string };
    if (!res.ok || !body.csrf_token)
      throw new Error(`the console refused: ${body.error ?? String(res.status)}`);
    return { base, cookie: res.headers.getSetCookie()[0]?.split(";")[0] ?? "", csrf: body.csrf_token };
  } finally {
    await fetch(new URL("/_matrix/client/v3/logout", url), { method: "POST", headers: auth }).catch(
      () => undefined,
    );
  }
}

async function call(s: Session, method: string, path: string, body?: unknown): Promise<Response> {
  const res = await fetch(`${s.base}${path}`, {
    method,
    headers: {
      cookie: s.cookie,
      ...(method === "GET" ? {} : { "x-medmesh-csrf": s.csrf }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) {
    const err = (await res.json().catch(() => ({}))) as { errcode?: string; error?: string };
    throw new Error(`${err.errcode ?? String(res.status)}: ${err.error ?? res.statusText}`);
  }
  return res;
}

/** `medmesh admin …`: every console action, scripted, through the same API as the pages. */
export async function runAdminCli(argv: string[], io: CliIo): Promise<number> {
  let session: Session | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: "string" },
        user: { type: "string" },
        q: { type: "string" },
        reason: { type: "string" },
        yes: { type: "boolean" },
        actor: { type: "string" },
        action: { type: "string" },
        object: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        format: { type: "string" },
      },
    });
    const [command, target] = positionals;
    if (!command || command === "help") {
      io.stdout(USAGE);
      return command ? 0 : 2;
    }
    const need = (v: string | undefined, what: string): string => {
      if (!v) throw new UsageError(`${what} is required`);
      return v;
    };
    const url = need(values.url, "--url");
    const user = need(values.user, "--user");
    const password = need(
      (io.password ?? (() => process.env.MEDMESH_ADMIN_PASSWORD))(),
      "MEDMESH_ADMIN_PASSWORD",
    );
    const commands: Record<string, (s: Session) => Promise<unknown>> = {
      whoami: async (s) => (await call(s, "GET", "/session")).json(),
      reviews: async (s) => (await call(s, "GET", "/reviews")).json(),
      approve: async (s) =>
        (
          await call(s, "POST", `/reviews/${encodeURIComponent(need(target, "USER"))}`, {
            decision: "approve",
          })
        ).json(),
      reject: async (s) =>
        (
          await call(s, "POST", `/reviews/${encodeURIComponent(need(target, "USER"))}`, {
            decision: "reject",
            reason: need(values.reason, "--reason"),
          })
        ).json(),
      users: async (s) =>
        (await call(s, "GET", `/users?limit=200&q=${encodeURIComponent(values.q ?? "")}`)).json(),
      devices: async (s) =>
        (await call(s, "GET", `/users/${encodeURIComponent(need(target, "USER"))}`)).json(),
      wipe: async (s) => {
        const who = need(target, "USER");
        return (await call(s, "POST", `/users/${encodeURIComponent(who)}/wipe`, { confirm: who })).json();
      },
      audit: async (s) => {
        const p = new URLSearchParams({ format: values.format ?? "json" });
        for (const k of ["actor", "action", "object", "from", "to"] as const) {
          const v = values[k];
          if (v) p.set(k, v);
        }
        const res = await call(s, "GET", `/audit/export?${p.toString()}`);
        return values.format === "csv" ? await res.text() : await res.json();
      },
      "verify-chain": async (s) => (await call(s, "POST", "/audit/verify")).json(),
      status: async (s) => (await call(s, "GET", "/status")).json(),
    };
    const run = commands[command];
    if (!run) throw new UsageError(`unknown command ${command}`);
    if (command === "wipe" && !values.yes)
      throw new UsageError("wipe deletes every device and token of the user: add --yes");
    session = await signIn(url, user, password);
    const out = await run(session);
    io.stdout(typeof out === "string" ? out : `${JSON.stringify(out, null, 2)}\n`);
    if (command === "verify-chain" && (out as { ok?: boolean }).ok === false) return 1;
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    io.stderr(`medmesh admin: ${(err as Error).message}\n`);
    return 1;
  } finally {
    if (session) await call(session, "DELETE", "/session").catch(() => undefined);
  }
}
