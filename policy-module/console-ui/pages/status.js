import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { Chart } from "../chart.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";
import { BridgeStatus } from "./status-bridge.js";

const health = (h) =>
  h.ok
    ? html`<span class="ok">${t("status.up", { ms: h.ms })}</span>`
    : html`<span class="error">${t("status.down", { error: h.error })}</span>`;

/** The sweeps' durations over the last ones, and what the latest deleted. */
function Sweeps({ sweeps }) {
  const last = sweeps.at(-1);
  return html`<h3>${t("status.sweeps")}</h3>
    <${Chart}
      label=${t("status.sweepChart")}
      summary=${
        last
          ? t("status.sweepSummary", {
              n: sweeps.length,
              seconds: last.seconds.toFixed(2),
              max: Math.max(...sweeps.map((s) => s.seconds)).toFixed(2),
            })
          : t("status.noSweeps")
      }
      series=${[{ name: "seconds", points: sweeps.map((s) => ({ at: s.at, value: s.seconds })), className: "line-a" }]}
    />
    ${last && html`<p id="last-sweep">${t("status.lastSweep", { ...last, at: fmtTime(last.at) })}</p>`}`;
}

export function StatusPage({ session }) {
  const [s, setS] = useState(/** @type {import("../types").Status | undefined} */ (undefined));
  const [error, setError] = useState("");
  useEffect(() => {
    api("GET", "/status")
      .then(setS)
      .catch((err) => setError(messageOf(err)));
  }, []);
  if (error)
    return html`<h1>${t("status.heading")}</h1>
      <p class="error" role="alert">${error}</p>`;
  if (!s)
    return html`<h1>${t("status.heading")}</h1>
      <p>${t("app.loading")}</p>`;
  return html`<h1>${t("status.heading")}</h1>
    <div class="cards">
      <section class="card" aria-labelledby="st-trust" id="status-trust">
        <h2 id="st-trust">${t("status.trust")}</h2>
        ${
          s.trust.open_federation
            ? html`<p>${t("status.openFederation")}</p>`
            : s.trust.networks.map(
                (n) =>
                  html`<p>
                    ${t("status.network", { network: n.network, sequence: n.sequence, expires: fmtTime(n.expires_at) })}
                  </p>`,
              )
        }
        <h3>${t("status.organisations")}</h3>
        <ul id="peers">
          ${s.trust.organisations.map((o) => {
            const r = s.trust.reachability.find((x) => x.server === o);
            const state = !r
              ? ""
              : r.ok
                ? html`: <span class="ok">${t("status.reachable", { ms: r.ms })}</span>`
                : html`: <span class="error">${t("status.unreachable", { error: r.error })}</span>`;
            return html`<li>${o}${state}</li>`;
          })}
        </ul>
        <h3>${t("status.sources")}</h3>
        <ul>
          ${s.trust.sources.map((x) => html`<li>${x.source}: ${x.ok ? t("status.sourceOk") : `${t("status.sourceFailed")} (${x.error ?? ""})`}</li>`)}
        </ul>
      </section>
      <section class="card" aria-labelledby="st-retention">
        <h2 id="st-retention">${t("status.retention")}</h2>
        <p>
          ${t("status.policy", { days: s.retention.policy.default_days, min: s.retention.policy.min_days })}
        </p>
        ${s.retention.index && html`<p>${t("status.indexed", s.retention.index)}</p>`}
        <${Sweeps} sweeps=${s.retention.sweeps} />
        <h3>${t("status.ownPeriod")}</h3>
        <ul>
          ${s.retention.rooms_with_own_period.map((r) => html`<li><code>${r.room_id}</code>: ${t("status.days", { days: r.days })}</li>`)}
        </ul>
        <h3>${t("status.recent")}</h3>
        <ul>
          ${s.retention.recent.map((r) => html`<li>${fmtTime(r.at)} ${r.action} ${r.outcome}</li>`)}
        </ul>
      </section>
      <section class="card" aria-labelledby="st-verification">
        <h2 id="st-verification">${t("status.verification")}</h2>
        <p>${t("status.reviewsWaiting", { n: s.verification.reviews_waiting ?? "—" })}</p>
      </section>
      <${BridgeStatus} mayRetry=${session.permissions.includes("bridge.retry")} />
      <section class="card" aria-labelledby="st-health" id="status-health">
        <h2 id="st-health">${t("status.health")}</h2>
        <p>${t("status.store")}: ${health(s.health.store)}</p>
        <p>${t("status.synapse")} ${s.health.synapse.version ?? ""}: ${health(s.health.synapse)}</p>
        ${s.health.bridge && html`<p id="health-bridge">${t("bridge.heading")}: ${health(s.health.bridge)}</p>`}
      </section>
    </div>`;
}
