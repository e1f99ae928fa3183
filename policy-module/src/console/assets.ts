import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Refusal, route, type OwnResponse, type Route } from "../proxy/index.ts";
import { CONSOLE_PATH } from "./http.ts";

/** The console's pages: console-ui/ (Preact + htm + i18next), bundled by esbuild when the service starts. */
export const UI_DIR = fileURLToPath(new URL("../../console-ui/", import.meta.url));

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

export interface ConsoleAssets {
  js: Buffer;
  css: Buffer;
  html: Buffer;
  icon: Buffer;
}

/** Bundles the pages in memory (a fraction of a second): nothing to build or ship beside `npm ci`. */
export async function buildAssets(): Promise<ConsoleAssets> {
  const out = await build({
    entryPoints: [`${UI_DIR}app.js`],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    write: false,
    outdir: "out",
    loader: { ".json": "json" },
    logLevel: "silent",
    legalComments: "none",
  });
  const js = out.outputFiles.find((f) => f.path.endsWith(".js"));
  if (!js) throw new Error("the console bundle produced no JavaScript");
  return {
    js: Buffer.from(js.contents),
    css: readFileSync(`${UI_DIR}console.css`),
    html: readFileSync(`${UI_DIR}index.html`),
    icon: readFileSync(`${UI_DIR}favicon.svg`),
  };
}

export function assetRoutes(assets: ConsoleAssets): Route[] {
  const file = (body: Buffer, contentType: string): OwnResponse => ({
    status: 200,
    body,
    contentType,
    headers: { ...SECURITY, "cache-control": "no-cache" },
  });
  return [
    route("GET", `^${CONSOLE_PATH}/assets/app\\.js`, () =>
      Promise.resolve(file(assets.js, "text/javascript; charset=utf-8")),
    ),
    route("GET", `^${CONSOLE_PATH}/assets/console\\.css`, () =>
      Promise.resolve(file(assets.css, "text/css; charset=utf-8")),
    ),
    route("GET", `^${CONSOLE_PATH}/assets/favicon\\.svg`, () =>
      Promise.resolve(file(assets.icon, "image/svg+xml")),
    ),
    route("GET", `^${CONSOLE_PATH}`, () =>
      Promise.resolve({ status: 302, body: {}, headers: { location: `${CONSOLE_PATH}/` } }),
    ),
    // Every page of the single-page app is the same document; the app reads the path.
    route(
      "GET",
      `^${CONSOLE_PATH}(?:/|/(?:queue|members|audit|status|roles|departments|sign-in)(?:/[^/]*)?)`,
      () => Promise.resolve(file(assets.html, "text/html; charset=utf-8")),
    ),
    // Anything else under the console is the console's to refuse, never Synapse's to answer.
    route(["GET", "POST", "PUT", "DELETE"], `^${CONSOLE_PATH}/.*`, () =>
      Promise.reject(new Refusal(404, "M_UNRECOGNIZED", "There is no such page or API call in the console")),
    ),
  ];
}
