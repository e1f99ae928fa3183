/** A parsed XML element: local name (namespace prefix dropped), children, text. */
export interface XmlElement {
  name: string;
  children: XmlElement[];
  text: string;
}

const ENTITIES: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decode(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === "#")
      return String.fromCodePoint(
        e[1]?.toLowerCase() === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10),
      );
    const v = ENTITIES[e];
    if (v === undefined) throw new Error(`unknown entity ${m}`);
    return v;
  });
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&${Object.keys(ENTITIES).find((k) => ENTITIES[k] === c) ?? ""};`);
}

/**
 * A small, strict XML reader for registry answers: elements, text, CDATA, comments and processing
 * instructions; no DTDs (refused, so no entity expansion tricks). Throws on malformed input.
 */
export function parseXml(input: string): XmlElement {
  const root: XmlElement = { name: "#document", children: [], text: "" };
  const stack: XmlElement[] = [root];
  let i = 0;
  while (i < input.length) {
    const lt = input.indexOf("<", i);
    const top = stack[stack.length - 1] as XmlElement;
    if (lt === -1) {
      if (input.slice(i).trim()) throw new Error("text after the document element");
      break;
    }
    if (lt > i) top.text += decode(input.slice(i, lt));
    if (input.startsWith("<!--", lt)) {
      const end = input.indexOf("-->", lt);
      if (end === -1) throw new Error("unterminated comment");
      i = end + 3;
    } else if (input.startsWith("<![CDATA[", lt)) {
      const end = input.indexOf("]]>", lt);
      if (end === -1) throw new Error("unterminated CDATA");
      top.text += input.slice(lt + 9, end);
      i = end + 3;
    } else if (input.startsWith("<?", lt)) {
      const end = input.indexOf("?>", lt);
      if (end === -1) throw new Error("unterminated processing instruction");
      i = end + 2;
    } else if (input.startsWith("<!", lt)) {
      throw new Error("DTDs are not accepted");
    } else {
      const end = input.indexOf(">", lt);
      if (end === -1) throw new Error("unterminated tag");
      const tag = input.slice(lt + 1, end);
      const m = /^(\/?)([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)(\s[^]*?)?(\/?)$/.exec(tag.trim());
      if (!m) throw new Error(`malformed tag <${tag.slice(0, 40)}>`);
      const [, closing, , name = "", , selfClosing] = m;
      if (closing) {
        const open = stack.pop();
        if (!open || open === root || open.name !== name) throw new Error(`unexpected </${name}>`);
      } else {
        const el: XmlElement = { name, children: [], text: "" };
        top.children.push(el);
        if (!selfClosing) stack.push(el);
      }
      i = end + 1;
    }
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]?.name ?? "?"}>`);
  if (root.children.length !== 1) throw new Error("not exactly one document element");
  return root.children[0] as XmlElement;
}

/** Descendants with this local name, depth first. */
export function findAll(el: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  for (const c of el.children) {
    if (c.name === name) out.push(c);
    out.push(...findAll(c, name));
  }
  return out;
}

export const textOf = (el: XmlElement | undefined, name: string): string | undefined => {
  const found = el && findAll(el, name)[0];
  return found ? found.text.trim() : undefined;
};
