import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
export const fmtTime = (/** @type {string | null | undefined} */ iso) =>
  iso ? new Date(iso).toLocaleString(document.documentElement.lang) : "—";
