import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import puppeteer, { type Browser as Chromium, type Page } from "puppeteer-core";
import { TEST_RUNS_DIR } from "./test-network.ts";

const require = createRequire(import.meta.url);
/** axe-core's browser build, injected into each page under test. */
const AXE_SOURCE = (require("axe-core") as { source: string }).source;

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it); MEDMESH_CHROMIUM overrides. */
export const CHROMIUM = process.env.MEDMESH_CHROMIUM ?? "/usr/bin/chromium";

export interface HeadlessChromium {
  browser: Chromium;
  /** A fresh page in its own incognito context (own cookies), in the given browser language. */
  page(language?: string): Promise<Page>;
  /** Saves a full-page screenshot under the run's output folder; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
  /** axe-core on the page as it is now: the serious and critical violations (rule id and nodes). */
  axe(page: Page): Promise<{ id: string; impact: string; nodes: string[] }[]>;
  readonly outDir: string;
  close(): Promise<void>;
}

export async function startChromium(name: string): Promise<HeadlessChromium> {
  const outDir = join(TEST_RUNS_DIR, `${name}-screenshots-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  await mkdir(outDir, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root in CI containers Chromium's sandbox cannot start; the pages are our own.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  return {
    browser,
    outDir,
    async page(language = "en-GB") {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      await page.setExtraHTTPHeaders({ "accept-language": language });
      await page.evaluateOnNewDocument((lang: string) => {
        Object.defineProperty(navigator, "languages", { get: () => [lang] });
        Object.defineProperty(navigator, "language", { get: () => lang });
      }, language);
      page.setDefaultTimeout(30_000);
      return page;
    },
    async screenshot(page, file) {
      const path = join(outDir, `${file}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async axe(page) {
      await page.evaluate(AXE_SOURCE);
      const result = await page.evaluate(async () => {
        const axe = (
          globalThis as unknown as {
            axe: {
              run(
                ctx: unknown,
                o: object,
              ): Promise<{
                violations: { id: string; impact: string | null; nodes: { target: unknown[] }[] }[];
              }>;
            };
          }
        ).axe;
        const r = await axe.run((globalThis as unknown as { document: unknown }).document, {
          resultTypes: ["violations"],
        });
        return r.violations.map((v) => ({
          id: v.id,
          impact: v.impact ?? "",
          nodes: v.nodes.map((n) => JSON.stringify(n.target)),
        }));
      });
      return result.filter((v) => v.impact === "serious" || v.impact === "critical");
    },
    close: () => browser.close(),
  };
}
