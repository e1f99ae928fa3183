const ALLOWED = new Set([
  "b",
  "strong",
  "i",
  "em",
  "u",
  "code",
  "pre",
  "a",
  "ul",
  "ol",
  "li",
  "br",
  "p",
  "blockquote",
]);

const escapeText = (s: string): string =>
  s.replace(/&(?![a-zA-Z]+;|#\d+;|#x[0-9a-fA-F]+;)/g, "&amp;").replace(/>/g, "&gt;");

/**
 * The interop API's HTML subset, enforced: allowed tags keep no attributes except an http(s) or
 * mailto `href` on links; other tags are dropped (their text stays); comments and anything that
 * is not a tag are text. What reaches Matrix clients is what the API documents.
 */
export function sanitizeHtml(html: string): string {
  let out = "";
  const tag = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)\b([^<>]*)>|<!--[\s\S]*?-->|</g;
  let last = 0;
  for (let m = tag.exec(html); m; m = tag.exec(html)) {
    out += escapeText(html.slice(last, m.index));
    last = tag.lastIndex;
    const [, closing, rawName, attrs] = m;
    const name = rawName?.toLowerCase();
    if (m[0] === "<") {
      out += "&lt;";
      continue;
    }
    if (!name || !ALLOWED.has(name)) continue;
    if (closing) {
      if (name !== "br") out += `</${name}>`;
      continue;
    }
    if (name === "a") {
      const href = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')/i.exec(attrs ?? "");
      const url = href?.[1] ?? href?.[2];
      out += url && /^(https?:|mailto:)/i.test(url) ? `<a href="${url.replace(/"/g, "&quot;")}">` : "<a>";
      continue;
    }
    out += name === "br" ? "<br>" : `<${name}>`;
  }
  return out + escapeText(html.slice(last));
}
