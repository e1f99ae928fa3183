import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { Chart } from "../chart.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

/**
 * @typedef {{ pending: number, failed: number, oldest_pending_at: string | null }} Counts
 * @typedef {{ id: string, configured: boolean, outbound: Counts, inbound: Counts }} Vendor
 * @typedef {{ at: string, direction: "inbound" | "outbound", pending: number, failed: number }} Sample
 * @typedef {{ kind: "outbound" | "inbound" | "appservice", id: string, what: string, attempts: number, error: string | null }} Letter
 * @typedef {{ configured: false } | { configured: true, vendors: Vendor[], samples: Sample[],
 *   dead_letters: { outbound: QueueLetter[], inbound: QueueLetter[], appservice: FrameLetter[] } }} Bridge
 * @typedef {{ seq: number, vendor: string, conversation_id: string, attempts: number, error: string | null }} QueueLetter
 * @typedef {{ event_id: string, room_id: string, type: string, attempts: number, error: string }} FrameLetter
 */

/** The minute's depth over both directions, one point per sampled minute. */
function totals(/** @type {Sample[]} */ samples, /** @type {"pending" | "failed"} */ field) {
  /** @type {Map<string, number>} */
  const byMinute = new Map();
  for (const s of samples) byMinute.set(s.at, (byMinute.get(s.at) ?? 0) + s[field]);
  return [...byMinute].map(([at, value]) => ({ at, value }));
}

/** @returns {Letter[]} */
function letters(/** @type {Extract<Bridge, { configured: true }>["dead_letters"]} */ d) {
  return [
    ...d.outbound.map((l) => ({
      kind: /** @type {const} */ ("outbound"),
      id: String(l.seq),
      what: `${l.vendor} · ${l.conversation_id}`,
      attempts: l.attempts,
      error: l.error,
    })),
    ...d.inbound.map((l) => ({
      kind: /** @type {const} */ ("inbound"),
      id: String(l.seq),
      what: `${l.vendor} · ${l.conversation_id}`,
      attempts: l.attempts,
      error: l.error,
    })),
    ...d.appservice.map((l) => ({
      kind: /** @type {const} */ ("appservice"),
      id: l.event_id,
      what: `${l.type} · ${l.room_id}`,
      attempts: l.attempts,
      error: l.error,
    })),
  ];
}

/** The bridge's card on the status page: vendors, queue depths over the last day, dead letters. */
export function BridgeStatus(/** @type {{ mayRetry: boolean }} */ { mayRetry }) {
  const [b, setB] = useState(/** @type {Bridge | undefined} */ (undefined));
  const [error, setError] = useState("");
  const [outcome, setOutcome] = useState("");
  const load = () => {
    api("GET", "/bridge")
      .then((/** @type {Bridge} */ x) => {
        setB(x);
        setError("");
      })
      .catch((err) => setError(messageOf(err)));
  };
  useEffect(load, []);
  const retry = async (/** @type {Letter} */ l) => {
    try {
      /** @type {{ outcome: string, error?: string }} */
      const r = await api("POST", `/bridge/dead-letters/${l.kind}/${encodeURIComponent(l.id)}/retry`);
      setOutcome(
        r.outcome === "failed" ? t("bridge.retryFailed", { error: r.error ?? "" }) : t("bridge.retried"),
      );
    } catch (err) {
      setOutcome(messageOf(err));
    }
    load();
  };
  const body = () => {
    if (error) return html`<p class="error" role="alert">${error}</p>`;
    if (!b) return html`<p>${t("app.loading")}</p>`;
    if (!b.configured) return html`<p>${t("bridge.none")}</p>`;
    const pending = totals(b.samples, "pending");
    const failed = totals(b.samples, "failed");
    const dead = letters(b.dead_letters);
    return html` <table id="bridge-vendors">
        <caption class="sr">
          ${t("bridge.vendors")}
        </caption>
        <thead>
          <tr>
            <th scope="col">${t("bridge.vendor")}</th>
            <th scope="col">${t("bridge.outbound")}</th>
            <th scope="col">${t("bridge.inbound")}</th>
          </tr>
        </thead>
        <tbody>
          ${b.vendors.map(
            (v) =>
              html`<tr>
                <th scope="row">${v.id}${v.configured ? "" : ` (${t("bridge.removed")})`}</th>
                <td>
                  ${t("bridge.counts", { ...v.outbound, oldest: fmtTime(v.outbound.oldest_pending_at) })}
                </td>
                <td>${t("bridge.counts", { ...v.inbound, oldest: fmtTime(v.inbound.oldest_pending_at) })}</td>
              </tr>`,
          )}
        </tbody>
      </table>
      <${Chart}
        label=${t("bridge.depthChart")}
        summary=${t("bridge.depthSummary", {
          n: pending.length,
          pending: pending.at(-1)?.value ?? 0,
          max: Math.max(0, ...pending.map((p) => p.value)),
          failed: failed.at(-1)?.value ?? 0,
        })}
        series=${[
          { name: "pending", points: pending, className: "line-a" },
          { name: "failed", points: failed, className: "line-b" },
        ]}
      />
      <p>
        <span class="legend-a">■ ${t("bridge.pending")}</span>
        <span class="legend-b">■ ${t("bridge.failed")}</span>
      </p>
      <h3>${t("bridge.deadLetters")}</h3>
      ${
        dead.length === 0
          ? html`<p id="no-dead-letters">${t("bridge.noDeadLetters")}</p>`
          : html`<ul id="dead-letters">
              ${dead.map(
                (l) =>
                  html`<li data-kind=${l.kind} data-id=${l.id}>
                    ${t(`bridge.kind.${l.kind}`)}: <code>${l.what}</code> —
                    ${t("bridge.attempts", { n: l.attempts })}
                    ${l.error ? html` — <span class="error">${l.error}</span>` : ""}
                    ${mayRetry && html` <button onClick=${() => retry(l)}>${t("bridge.retry")}</button>`}
                  </li>`,
              )}
            </ul>`
      }
      <p role="status" id="bridge-outcome">${outcome}</p>`;
  };
  return html`<section class="card" aria-labelledby="st-bridge" id="status-bridge">
    <h2 id="st-bridge">${t("bridge.heading")}</h2>
    ${body()}
  </section>`;
}
