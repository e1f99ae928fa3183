import { useEffect, useState } from "preact/hooks";
import { api } from "../api.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

const health = (h) =>
  h.ok
    ? html`<span class="ok">${t("status.up", { ms: h.ms })}</span>`
    : html`<span class="error">${t("status.down", { error: h.error })}</span>`;

export function StatusPage() {
  const [s, setS] = useState(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    api("GET", "/status")
      .then(setS)
      .catch((err) => setError(err.message));
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
      <section class="card" aria-labelledby="st-health" id="status-health">
        <h2 id="st-health">${t("status.health")}</h2>
        <p>${t("status.store")}: ${health(s.health.store)}</p>
        <p>${t("status.synapse")} ${s.health.synapse.version ?? ""}: ${health(s.health.synapse)}</p>
      </section>
    </div>`;
}
