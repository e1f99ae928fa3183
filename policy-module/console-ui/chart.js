import { html } from "./html.js";

const W = 240;
const H = 56;
const PAD = 4;

/**
 * A small line chart of one or two series over time (inline SVG: nothing to load, and the CSP
 * allows it). Its accessible name says what a sighted reader takes from it: the range and the
 * latest value.
 * @param {{ label: string, summary: string, series: { name: string, points: { at: string, value: number }[], className: string }[] }} props
 */
export function Chart({ label, summary, series }) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return html`<p>${summary}</p>`;
  const times = all.map((p) => Date.parse(p.at));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const max = Math.max(1, ...all.map((p) => p.value));
  const x = (/** @type {string} */ at) =>
    t1 === t0 ? W / 2 : PAD + ((Date.parse(at) - t0) / (t1 - t0)) * (W - 2 * PAD);
  const y = (/** @type {number} */ v) => H - PAD - (v / max) * (H - 2 * PAD);
  return html`<figure class="chart">
    <svg
      viewBox=${`0 0 ${String(W)} ${String(H)}`}
      width=${W}
      height=${H}
      role="img"
      aria-label=${`${label}: ${summary}`}
    >
      <line x1=${PAD} y1=${H - PAD} x2=${W - PAD} y2=${H - PAD} class="axis" />
      ${series.map((s) =>
        s.points.length === 1
          ? html`<circle
              cx=${x(s.points[0]?.at ?? "")}
              cy=${y(s.points[0]?.value ?? 0)}
              r="2.5"
              class=${s.className}
            />`
          : html`<polyline
              points=${s.points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ")}
              class=${s.className}
            />`,
      )}
    </svg>
    <figcaption>${summary}</figcaption>
  </figure>`;
}
