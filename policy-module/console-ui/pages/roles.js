import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { html } from "../html.js";
import { t } from "../i18n.js";

const ROLES = ["org_admin", "reviewer", "auditor"];

export function RolesPage({ session }) {
  const [grants, setGrants] = useState(/** @type {import("../types").Grant[] | undefined} */ (undefined));
  const [user, setUser] = useState("");
  const [role, setRole] = useState("reviewer");
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = () =>
    api("GET", "/roles")
      .then((r) => setGrants(r.grants))
      .catch((err) => setError(messageOf(err)));
  useEffect(() => void load(), []);
  const run = async (f, done) => {
    setError("");
    setMessage("");
    try {
      await f();
      setMessage(done);
      await load();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  const full = (u) => (u.startsWith("@") ? u : `@${u}:${session.server_name}`);
  return html`<h1>${t("roles.heading")}</h1>
    <form
      onSubmit=${(e) => {
        e.preventDefault();
        const id = full(user.trim());
        void run(
          () => api("PUT", `/roles/${encodeURIComponent(id)}`, { role }),
          t("roles.granted", { user: id, role: t(`role.${role}`) }),
        );
      }}
    >
      <label
        >${t("roles.user")}
        <input id="grant-user" value=${user} onInput=${(e) => setUser(e.currentTarget.value)} required
      /></label>
      <label
        >${t("roles.role")}
        <select id="grant-role" value=${role} onChange=${(e) => setRole(e.currentTarget.value)}>
          ${ROLES.map((r) => html`<option value=${r}>${t(`role.${r}`)}</option>`)}
        </select></label
      >
      <button type="submit" id="grant">${t("roles.grant")}</button>
    </form>
    ${message && html`<p class="ok" role="status" id="roles-message">${message}</p>`}
    ${error && html`<p class="error" role="alert" id="roles-error">${error}</p>`}
    ${
      grants &&
      html`<table id="grants">
        <thead>
          <tr>
            <th scope="col">${t("roles.user")}</th>
            <th scope="col">${t("roles.role")}</th>
            <th scope="col">${t("roles.source")}</th>
            <th scope="col">${t("roles.grantedBy")}</th>
            <th scope="col">${t("roles.revoke")}</th>
          </tr>
        </thead>
        <tbody>
          ${grants.map(
            (g) =>
              html`<tr>
                <td>${g.user_id}</td>
                <td>${t(`role.${g.role}`)}</td>
                <td>${t(`roles.${g.source}`)}</td>
                <td>${g.granted_by}</td>
                <td>
                  ${g.source === "console" && html`<button onClick=${() => run(() => api("DELETE", `/roles/${encodeURIComponent(g.user_id)}`), "✓")}>${t("roles.revoke")}</button>`}
                </td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }`;
}
