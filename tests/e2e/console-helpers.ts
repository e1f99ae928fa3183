import { join } from "node:path";
import { registerWithSharedSecret } from "@medmesh/common";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import type { Page } from "puppeteer-core";
import { OpenApiContract, type HeadlessChromium } from "../harness/index.ts";

export const CONSOLE = "/_medmesh/console";
export const API = `${CONSOLE}/api/v1`;

const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "console.yaml"));

/** A console API call from outside the browser, checked against the console's OpenAPI document. */
export async function consoleApi(
  org: RunningOrganisation,
  method: string,
  path: string,
  opts: { cookie?: string; csrf?: string; bearer?: string; body?: unknown; origin?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; setCookie: string[] }> {
  const res = await fetch(`${org.clientUrl}${API}${path}`, {
    method,
    headers: {
      ...(opts.cookie ? { cookie: opts.cookie } : {}),
      ...(opts.csrf ? { "x-medmesh-csrf": opts.csrf } : {}),
      ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}),
      ...(opts.origin ? { origin: opts.origin } : {}),
      ...(opts.body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
  });
  const op = contract.match(method, `${API}${path}`);
  if (!op) throw new Error(`${method} ${API}${path} is not in console.yaml`);
  await contract.check(op, res.clone());
  const type = res.headers.get("content-type") ?? "";
  const body = (type.startsWith("application/json") ? await res.json() : {}) as Record<string, unknown>;
  return { status: res.status, body, setCookie: res.headers.getSetCookie() };
}

/** Signs in as the console page does (password login, token traded for a session) — from Node. */
export async function apiSignIn(org: RunningOrganisation, user: string, password: string) {
  const login = await fetch(`${org.clientUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user }, password }),
  });
  const { access_token } = (await login.json()) as { access_token: string };
  const res = await consoleApi(org, "POST", "/session", { bearer: access_token });
  const cookie = res.setCookie[0]?.split(";")[0] ?? "";
  return { ...res, cookie, csrf: String(res.body.csrf_token), token: access_token };
}

export async function registerWithPassword(org: RunningOrganisation, localpart: string, admin = false) {
  const password = `${localpart}-password-123`;
  const user = await registerWithSharedSecret(org.synapseUrl, org.registrationSecret, {
    localpart,
    password,
    admin,
  });
  return { ...user, localpart, password, org };
}

/** Signs in through the page's form and waits for the console's navigation. */
export async function pageSignIn(page: Page, org: RunningOrganisation, user: string, password: string) {
  await page.goto(`${org.clientUrl}${CONSOLE}/`);
  await page.waitForSelector("#sign-in");
  await page.type("#user", user);
  await page.type("#password", password);
  await page.click("#sign-in button[type=submit]");
  await page.waitForSelector("header nav");
}

export async function openSection(page: Page, section: string) {
  await page.click(`header nav a[href="${CONSOLE}/${section}"]`);
  await page.waitForFunction(`location.pathname.endsWith(${JSON.stringify(`/${section}`)})`);
}

/** Screenshot and accessibility check of the page as it is; returns the serious/critical violations. */
export async function capture(chromium: HeadlessChromium, page: Page, name: string) {
  await chromium.screenshot(page, name);
  return chromium.axe(page);
}

export const text = (page: Page, selector: string): Promise<string> =>
  page.$eval(selector, (e) => (e as unknown as { textContent: string | null }).textContent ?? "");

/**
 * Checks every console API answer the page itself receives against console.yaml, so the pages'
 * calls cannot drift from the document. `checked()` waits for the checks and throws the first
 * mismatch; it answers the operations seen.
 */
export function checkPageCalls(page: Page): { checked(): Promise<string[]> } {
  const checks: Promise<string>[] = [];
  page.on("response", (res) => {
    const url = new URL(res.url());
    if (!url.pathname.startsWith(`${API}/`)) return;
    const method = res.request().method();
    checks.push(
      (async () => {
        const op = contract.match(method, url.pathname);
        if (!op) throw new Error(`the page called ${method} ${url.pathname}, which is not in console.yaml`);
        const body = res.status() === 204 ? null : await res.buffer();
        await contract.check(op, new Response(body, { status: res.status(), headers: res.headers() }));
        return op;
      })(),
    );
  });
  return { checked: async () => [...new Set(await Promise.all(checks))] };
}
