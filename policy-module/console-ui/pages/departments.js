import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { html } from "../html.js";
import { t } from "../i18n.js";

// datetime-local inputs hold local time without a zone; the API takes ISO 8601 with one.
const toInput = (iso) => {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};
const fromInput = (value) => (value ? new Date(value).toISOString() : "");
const lines = (text) =>
  text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
const EMPTY = {
  id: "",
  name: "",
  members: "",
  show_responder: false,
  rota: [{ from: "", until: "", on_duty: "" }],
};

export function DepartmentsPage({ session }) {
  const [departments, setDepartments] = useState(
    /** @type {import("../types").Department[] | undefined} */ (undefined),
  );
  const [form, setForm] = useState(EMPTY);
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = () =>
    api("GET", "/departments")
      .then((r) => setDepartments(r.departments))
      .catch((err) => setError(err.message));
  useEffect(() => void load(), []);
  const full = (u) => (u.startsWith("@") ? u : `@${u}:${session.server_name}`);
  const edit = (d) =>
    setForm({
      id: d.id,
      name: d.name,
      members: d.members.join("\n"),
      show_responder: d.show_responder,
      rota: d.rota.map((s) => ({
        from: toInput(s.from),
        until: toInput(s.until),
        on_duty: s.on_duty.join(", "),
      })),
    });
  // Functional updates: several inputs may change before the next render.
  const set = (field, value) => setForm((f) => ({ ...f, [field]: value }));
  const setShift = (i, field, value) =>
    setForm((f) => ({ ...f, rota: f.rota.map((s, j) => (j === i ? { ...s, [field]: value } : s)) }));
  const save = async (e) => {
    e.preventDefault();
    setError("");
    setMessage("");
    try {
      await api("PUT", `/departments/${encodeURIComponent(form.id.trim())}`, {
        name: form.name,
        members: lines(form.members).map(full),
        show_responder: form.show_responder,
        rota: form.rota.map((s) => ({
          from: fromInput(s.from),
          until: fromInput(s.until),
          on_duty: lines(s.on_duty).map(full),
        })),
      });
      setMessage(t("departments.saved", { name: form.name }));
      await load();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  /** Ending is final (the account is deactivated): asked first, with what it does. */
  const end = async (d) => {
    if (!confirm(t("departments.confirmEnd", { name: d.name, account: d.user_id }))) return;
    setError("");
    setMessage("");
    try {
      const ended = /** @type {import("../types").DepartmentRetired} */ (
        await api("DELETE", `/departments/${encodeURIComponent(d.id)}`)
      );
      setMessage(t("departments.ended", { name: d.name, conversations: ended.conversations_left }));
      await load();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return html`<h1>${t("departments.heading")}</h1>
    <p>${t("departments.intro")}</p>
    ${
      departments &&
      html`<table id="departments">
        <thead>
          <tr>
            <th scope="col">${t("departments.name")}</th>
            <th scope="col">${t("departments.account")}</th>
            <th scope="col">${t("departments.onDutyNow")}</th>
            <th scope="col">${t("departments.members")}</th>
            <th scope="col">${t("departments.edit")}</th>
            <th scope="col">${t("departments.end")}</th>
          </tr>
        </thead>
        <tbody>
          ${departments.map(
            (d) =>
              html`<tr>
                <td>${d.name}</td>
                <td>${d.user_id}</td>
                <td>${d.on_duty_now.length ? d.on_duty_now.join(", ") : t("departments.nobody")}</td>
                <td>${d.members.length}</td>
                <td><button type="button" onClick=${() => edit(d)}>${t("departments.edit")}</button></td>
                <td>
                  <button
                    type="button"
                    class="end-department"
                    data-department=${d.id}
                    aria-label=${t("departments.endDepartment", { name: d.name })}
                    onClick=${() => end(d)}
                  >
                    ${t("departments.end")}
                  </button>
                </td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
    <h2>${t("departments.formHeading")}</h2>
    <form id="department-form" onSubmit=${save}>
      <label
        >${t("departments.id")}
        <input
          id="department-id"
          value=${form.id}
          onInput=${(e) => set("id", e.currentTarget.value)}
          required
      /></label>
      <label
        >${t("departments.name")}
        <input
          id="department-name"
          value=${form.name}
          onInput=${(e) => set("name", e.currentTarget.value)}
          required
      /></label>
      <label
        >${t("departments.membersHint")}
        <textarea id="department-members" rows="4" onInput=${(e) => set("members", e.currentTarget.value)}>
${form.members}</textarea>
      </label>
      <label
        ><input
          type="checkbox"
          id="department-show-responder"
          checked=${form.show_responder}
          onChange=${(e) => set("show_responder", e.currentTarget.checked)}
        />
        ${t("departments.showResponder")}</label
      >
      <fieldset>
        <legend>${t("departments.rota")}</legend>
        ${form.rota.map(
          (s, i) =>
            html`<div class="shift">
              <label
                >${t("departments.from")}
                <input
                  type="datetime-local"
                  class="shift-from"
                  value=${s.from}
                  onInput=${(e) => setShift(i, "from", e.currentTarget.value)}
              /></label>
              <label
                >${t("departments.until")}
                <input
                  type="datetime-local"
                  class="shift-until"
                  value=${s.until}
                  onInput=${(e) => setShift(i, "until", e.currentTarget.value)}
              /></label>
              <label
                >${t("departments.onDuty")}
                <input
                  class="shift-on-duty"
                  value=${s.on_duty}
                  onInput=${(e) => setShift(i, "on_duty", e.currentTarget.value)}
              /></label>
              <button
                type="button"
                onClick=${() =>
                  set(
                    "rota",
                    form.rota.filter((_, j) => j !== i),
                  )}
              >
                ${t("departments.removeShift")}
              </button>
            </div>`,
        )}
        <button
          type="button"
          id="add-shift"
          onClick=${() =>
            setForm((f) => ({
              ...f,
              rota: [...f.rota, { from: f.rota[f.rota.length - 1]?.until ?? "", until: "", on_duty: "" }],
            }))}
        >
          ${t("departments.addShift")}
        </button>
      </fieldset>
      <button type="submit" id="save-department">${t("departments.save")}</button>
    </form>
    ${message && html`<p class="ok" role="status" id="departments-message">${message}</p>`}
    ${error && html`<p class="error" role="alert" id="departments-error">${error}</p>`}`;
}
