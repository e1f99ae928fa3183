/**
 * A browser as far as single sign-on needs one: real HTTP (fetch) with a cookie jar, redirects
 * followed by hand (every hop is recorded), and HTML forms submitted with their hidden fields.
 * Cookies are kept per host name, not per port, as browsers do.
 */
export class Browser {
  private readonly cookies = new Map<string, { host: string; name: string; value: string; path: string }>();
  /** Every URL requested, in order. */
  readonly visited: string[] = [];

  async request(url: string, init: { method?: string; form?: URLSearchParams } = {}): Promise<Response> {
    const target = new URL(url);
    const cookie = [...this.cookies.values()]
      .filter((c) => c.host === target.hostname && target.pathname.startsWith(c.path))
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
    this.visited.push(url);
    const res = await fetch(target, {
      method: init.method ?? "GET",
      redirect: "manual",
      headers: {
        accept: "text/html,application/json",
        ...(cookie ? { cookie } : {}),
        ...(init.form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
      },
      ...(init.form ? { body: init.form.toString() } : {}),
      signal: AbortSignal.timeout(30_000),
    });
    for (const line of res.headers.getSetCookie()) this.store(target, line);
    return res;
  }

  /**
   * Requests `url` and follows redirects until a page that is not a redirect, or until the next
   * location satisfies `stop` (not requested: e.g. the client app's URL with the login token).
   */
  async follow(
    url: string,
    init: { method?: string; form?: URLSearchParams } = {},
    stop: (location: string) => boolean = () => false,
  ): Promise<{ url: string; status: number; body: string; stoppedAt?: string }> {
    let current = url;
    let res = await this.request(current, init);
    for (let hops = 0; hops < 20; hops++) {
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) {
        return { url: current, status: res.status, body: await res.text() };
      }
      await res.body?.cancel();
      const next = new URL(location, current).toString();
      if (stop(next)) return { url: current, status: res.status, body: "", stoppedAt: next };
      current = next;
      res = await this.request(current);
    }
    throw new Error(`more than 20 redirects from ${url}`);
  }

  /** Submits the page's first form with its hidden fields and `fields`, following redirects. */
  submit(
    page: { url: string; body: string },
    fields: Record<string, string>,
    stop?: (location: string) => boolean,
  ): ReturnType<Browser["follow"]> {
    const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(page.body);
    if (!form) throw new Error(`no form on ${page.url}`);
    const attr = (tag: string, name: string): string | undefined =>
      new RegExp(`\\b${name}="([^"]*)"`, "i").exec(tag)?.[1];
    const values = new URLSearchParams();
    for (const input of (form[2] ?? "").match(/<input\b[^>]*>/gi) ?? []) {
      const name = attr(input, "name");
      if (name && attr(input, "type")?.toLowerCase() === "hidden")
        values.set(name, decodeEntities(attr(input, "value") ?? ""));
    }
    for (const [k, v] of Object.entries(fields)) values.set(k, v);
    const action = new URL(decodeEntities(attr(form[1] ?? "", "action") ?? page.url), page.url).toString();
    const method = (attr(form[1] ?? "", "method") ?? "GET").toUpperCase();
    return this.follow(action, { method, form: values }, stop);
  }

  private store(from: URL, line: string): void {
    const [pair = "", ...attributes] = line.split(";").map((p) => p.trim());
    const eq = pair.indexOf("=");
    if (eq <= 0) return;
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    let path = from.pathname.replace(/\/[^/]*$/, "") || "/";
    let expired = value === "";
    for (const a of attributes) {
      const [k = "", v = ""] = a.split("=").map((p) => p.trim());
      if (k.toLowerCase() === "path" && v.startsWith("/")) path = v;
      if (k.toLowerCase() === "max-age" && Number(v) <= 0) expired = true;
      if (k.toLowerCase() === "expires" && Date.parse(v) <= Date.now()) expired = true;
    }
    const key = `${from.hostname} ${path} ${name}`;
    if (expired) this.cookies.delete(key);
    else this.cookies.set(key, { host: from.hostname, name, value, path });
  }
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}
