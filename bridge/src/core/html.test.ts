import { describe, expect, it } from "vitest";
import { sanitizeHtml } from "./html.ts";

describe("the interop HTML subset", () => {
  it("keeps the allowed tags and drops everything else", () => {
    expect(sanitizeHtml('<p onclick="x()">Hi <b>there</b><script>alert(1)</script></p>')).toBe(
      "<p>Hi <b>there</b>alert(1)</p>",
    );
    expect(sanitizeHtml('<a href="https://example.org/x?a=1&b=2" target=_blank>link</a>')).toBe(
      '<a href="https://example.org/x?a=1&b=2">link</a>',
    );
    expect(sanitizeHtml('<a href="javascript:alert(1)">x</a>')).toBe("<a>x</a>");
    expect(sanitizeHtml("a < b and c > d <!-- hidden --><br/>")).toBe("a &lt; b and c &gt; d <br>");
    expect(sanitizeHtml('<img src="x" onerror="y">')).toBe("");
  });
});
