import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Provider, { type KoaContextWithOIDC } from "oidc-provider";

/** A person the test identity provider knows: their sign-in, and the claims it asserts. */
export interface IdpAccount {
  username: string;
  password: string;
  /** The provider's own ID for the person (OIDC `sub`, Synapse's external_id). */
  sub: string;
  /** name, preferred_username and whatever else the organisation's IdP carries (e.g. big_number). */
  claims: Record<string, string>;
}

export interface TestIdp {
  /** The issuer URL (OIDC discovery below it). */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Successful sign-ins, by username, in order. */
  readonly signIns: readonly string[];
  /** Token requests that presented a PKCE code_verifier (the provider refuses the others). */
  readonly tokenRequestsWithVerifier: number;
  stop(): Promise<void>;
}

const page = (title: string, body: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${String(c.charCodeAt(0))};`);

/**
 * The hospital's identity provider for tests: `oidc-provider` (the OpenID-certified Node
 * implementation) on loopback, with one confidential client (the organisation's Synapse),
 * authorization code with PKCE required, ID tokens signed with its own RSA key and carrying the
 * profile claims, and a sign-in page of its own that checks username and password. Consent is
 * implied for the first-party client, as a hospital's IdP does for its own services.
 */
export async function startTestIdp(opts: {
  accounts: readonly IdpAccount[];
  /** Synapse's OIDC callback as the browser reaches it (the proxy's client URL). */
  redirectUri: string;
  clientId?: string;
  /** Claims released with the `profile` scope besides name and preferred_username. */
  extraClaims?: readonly string[];
}): Promise<TestIdp> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  const clientId = opts.clientId ?? "medmesh-synapse";
  const clientSecret = randomBytes(24).toString("base64url");
  const byUsername = new Map(opts.accounts.map((a) => [a.username, a]));
  const bySub = new Map(opts.accounts.map((a) => [a.sub, a]));
  const signIns: string[] = [];
  let withVerifier = 0;

  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [opts.redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    claims: {
      openid: ["sub"],
      profile: ["name", "preferred_username", ...(opts.extraClaims ?? [])],
    },
    // The claims of the granted scopes go into the ID token, as Entra ID and Keycloak do.
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => {
      const account = bySub.get(sub);
      return account && { accountId: sub, claims: () => ({ sub, ...account.claims }) };
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
      const { oidc } = ctx;
      const client = oidc.client;
      const accountId = oidc.session?.accountId;
      if (!client || !accountId) return undefined;
      const existing = oidc.session.grantIdFor(client.clientId);
      if (existing) return oidc.provider.Grant.find(existing);
      const grant = new oidc.provider.Grant({ clientId: client.clientId, accountId });
      const scope = oidc.params?.scope;
      grant.addOIDCScope(typeof scope === "string" ? scope : "openid");
      await grant.save();
      return grant;
    },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    jwks: {
      keys: [{ ...privateKey.export({ format: "jwk" }), kid: "test-idp-1", use: "sig", alg: "RS256" }],
    },
  });
  // A code exchanged for tokens: oidc-provider refuses one without its PKCE verifier; counted here.
  provider.on("grant.success", (ctx: KoaContextWithOIDC) => {
    if (typeof ctx.oidc.params?.code_verifier === "string") withVerifier++;
  });
  provider.on("server_error", (_ctx, err) => {
    process.stderr.write(`test IdP server error: ${err.message}\n`);
  });
  const oidc = provider.callback();

  const signInForm = (uid: string, error?: string): string =>
    page(
      "Hospital sign-in",
      `<h1>Sign in</h1>${error ? `<p class="error">${escapeHtml(error)}</p>` : ""}` +
        `<form method="post" action="/interaction/${escapeHtml(uid)}/login">` +
        `<input name="username" autocomplete="username"><input name="password" type="password">` +
        `<button type="submit">Sign in</button></form>`,
    );

  const interaction = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const details = await provider.interactionDetails(req, res);
    const { uid, prompt } = details;
    if (req.method === "GET" && path === `/interaction/${uid}`) {
      if (prompt.name !== "login") throw new Error(`unexpected prompt ${prompt.name}`);
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(signInForm(uid));
      return;
    }
    if (req.method === "POST" && path === `/interaction/${uid}/login`) {
      const form = new URLSearchParams(await readBody(req));
      const account = byUsername.get(form.get("username") ?? "");
      if (!account || account.password !== form.get("password")) {
        res
          .writeHead(200, { "content-type": "text/html; charset=utf-8" })
          .end(signInForm(uid, "Unknown user name or wrong password"));
        return;
      }
      signIns.push(account.username);
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.sub } },
        {
          mergeWithLastSubmission: false,
        },
      );
      return;
    }
    res.writeHead(404).end();
  };

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", issuer).pathname;
    if (path.startsWith("/interaction/")) {
      interaction(req, res, path).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain" });
        res.end(`interaction failed: ${(err as Error).message}`);
      });
      return;
    }
    void oidc(req, res);
  });

  return {
    issuer,
    clientId,
    clientSecret,
    signIns,
    get tokenRequestsWithVerifier() {
      return withVerifier;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error("form too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
