import { useEffect, useState } from "preact/hooks";
import { api, BASE, messageOf } from "../api.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

const FIELDS = ["actor", "action", "object"];

function Report({ report }) {
  if (!report.ok)
    return html`<p class="error" role="alert" id="verify-result">
      ${t("audit.broken", { message: report.break?.message ?? "" })}
    </p>`;
  const a = report.anchor;
  return html`<div id="verify-result" role="status">
    <p class="ok">${t("audit.intact")}</p>
    <p>
      ${t("audit.checked", { records: report.records, first: report.first?.seq ?? 0, last: report.last?.seq ?? 0, pages: report.pages })}
    </p>
    <p>${t("audit.head")}: <code>${report.last?.hash ?? "—"}</code></p>
    <p>
      ${t("audit.anchor")}: ${a ? t("audit.anchorSigned", { kid: a.kid, seq: a.seq }) : t("audit.noAnchor")}
    </p>
  </div>`;
}

export function AuditPage() {
  const [filter, setFilter] = useState({ actor: "", action: "", object: "", from: "", to: "" });
  const [records, setRecords] = useState(
    /** @type {import("../types").AuditRecord[] | undefined} */ (undefined),
  );
  const [next, setNext] = useState(/** @type {number | null} */ (null));
  const [report, setReport] = useState(/** @type {import("../types").ChainReport | undefined} */ (undefined));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const query = (extra = {}) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...filter, ...extra })) {
      if (!v) continue;
      p.set(k, k === "from" || k === "to" ? new Date(v).toISOString() : String(v));
    }
    return p.toString();
  };
  const load = async (before) => {
    setError("");
    try {
      const page = await api("GET", `/audit?${query({ limit: 50, ...(before ? { before } : {}) })}`);
      setRecords((old) => (before ? [...(old ?? []), ...page.records] : page.records));
      setNext(page.next_before);
    } catch (err) {
      setError(messageOf(err));
    }
  };
  useEffect(() => void load(), []);
  const verify = async () => {
    setBusy(true);
    setReport(undefined);
    try {
      setReport(await api("POST", "/audit/verify"));
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  const input = (k, type = "text") =>
    html`<label
      >${t(`audit.${k}`)}
      <input
        id=${`filter-${k}`}
        type=${type}
        value=${filter[k]}
        onInput=${(e) => setFilter({ ...filter, [k]: e.currentTarget.value })}
    /></label>`;
  return html`<h1>${t("audit.heading")}</h1>
    <form
      onSubmit=${(e) => {
        e.preventDefault();
        void load();
      }}
    >
      ${FIELDS.map((k) => input(k))} ${input("from", "datetime-local")} ${input("to", "datetime-local")}
      <button type="submit" id="filter">${t("audit.filter")}</button>
    </form>
    <p>
      <a
        id="export-csv"
        href=${`${BASE}/audit/export?${query({ format: "csv" })}`}
        download="medmesh-audit.csv"
        >${t("audit.exportCsv")}</a
      >
      ·
      <a
        id="export-json"
        href=${`${BASE}/audit/export?${query({ format: "json" })}`}
        download="medmesh-audit.json"
        >${t("audit.exportJson")}</a
      >
      <button id="verify" onClick=${verify} disabled=${busy}>
        ${busy ? t("audit.verifying") : t("audit.verify")}
      </button>
    </p>
    ${report && html`<${Report} report=${report} />`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${
      records &&
      (records.length === 0
        ? html`<p>${t("audit.empty")}</p>`
        : html`<table id="audit">
            <thead>
              <tr>
                <th scope="col">seq</th>
                <th scope="col">${t("audit.time")}</th>
                <th scope="col">${t("audit.actor")}</th>
                <th scope="col">${t("audit.action")}</th>
                <th scope="col">${t("audit.object")}</th>
                <th scope="col">${t("audit.outcome")}</th>
              </tr>
            </thead>
            <tbody>
              ${records.map(
                (r) =>
                  html`<tr>
                    <td>${r.seq}</td>
                    <td>${fmtTime(r.at)}</td>
                    <td>${r.actor}</td>
                    <td>${r.action}</td>
                    <td>${r.object}</td>
                    <td>${r.outcome}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`)
    }
    ${next && html`<button onClick=${() => load(next)}>${t("audit.more")}</button>`}`;
}
