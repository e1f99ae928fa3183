import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

const enc = encodeURIComponent;

function Member({ userId, canAct, onBack }) {
  const [user, setUser] = useState(/** @type {import("../types").MemberDetail | undefined} */ (undefined));
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const [password, setPassword] = useState("");
  const load = () =>
    api("GET", `/users/${enc(userId)}`)
      .then(setUser)
      .catch((err) => setError(messageOf(err)));
  useEffect(() => void load(), [userId]);
  /** Each action asks first; the API also wants the target named in the body. */
  const act = async (question, path, body, what) => {
    if (!confirm(question)) return;
    setError("");
    setMessage("");
    try {
      await api("POST", `/users/${enc(userId)}${path}`, { confirm: userId, ...body });
      setMessage(t("members.done", { what }));
      await load();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  if (!user) return html`<p>${error || t("app.loading")}</p>`;
  return html`<section aria-labelledby="member-heading">
    <h2 id="member-heading">${user.user_id}</h2>
    <button onClick=${onBack}>←</button>
    <p>
      ${user.display_name ?? ""} · ${t("members.verification")}:
      <span id="member-verification">${user.verification?.status ?? t("members.none")}</span>
      ${user.verification?.profession ? ` · ${user.verification.profession}` : ""}
      ${user.deactivated ? ` · ${t("members.deactivated")}` : ""}
    </p>
    ${message && html`<p class="ok" role="status" id="member-message">${message}</p>`}
    ${error && html`<p class="error" role="alert" id="member-error">${error}</p>`}
    <h3>${t("members.devices")}</h3>
    ${
      user.devices.length === 0
        ? html`<p id="no-devices">${t("members.noDevices")}</p>`
        : html`<table id="devices">
            <thead>
              <tr>
                <th scope="col">${t("members.device")}</th>
                <th scope="col">${t("members.deviceName")}</th>
                <th scope="col">${t("members.lastIp")}</th>
                <th scope="col">${t("members.lastSeen")}</th>
                ${canAct && html`<th scope="col">${t("members.logout")}</th>`}
              </tr>
            </thead>
            <tbody>
              ${user.devices.map(
                (d) =>
                  html`<tr>
                    <td>${d.device_id}</td>
                    <td>${d.display_name ?? "—"}</td>
                    <td>${d.last_seen_ip ?? "—"}</td>
                    <td>${fmtTime(d.last_seen)}</td>
                    ${
                      canAct &&
                      html`<td>
                        <button
                          aria-label=${`${t("members.logout")} ${d.device_id}`}
                          onClick=${() =>
                            act(
                              t("members.confirmLogout", { user: userId, device: d.device_id }),
                              `/devices/${enc(d.device_id)}/logout`,
                              {},
                              t("members.logout"),
                            )}
                        >
                          ${t("members.logout")}
                        </button>
                      </td>`
                    }
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    ${
      canAct &&
      html`<div id="member-actions">
        <button
          id="wipe"
          class="danger"
          onClick=${() => act(t("members.confirmWipe", { user: userId }), "/wipe", {}, t("members.wipe"))}
        >
          ${t("members.wipe")}
        </button>
        <label
          >${t("members.newPassword")}
          <input
            id="new-password"
            type="password"
            autocomplete="new-password"
            value=${password}
            onInput=${(e) => setPassword(e.currentTarget.value)}
        /></label>
        <button
          id="reset-password"
          onClick=${() => act(t("members.confirmReset", { user: userId }), "/password", { new_password: password }, t("members.resetPassword"))}
        >
          ${t("members.resetPassword")}
        </button>
        <button
          id="deactivate"
          class="danger"
          onClick=${() => act(t("members.confirmDeactivate", { user: userId }), "/deactivate", { erase: true }, t("members.deactivate"))}
        >
          ${t("members.deactivate")}
        </button>
      </div>`
    }
    <h3>${t("members.history")}</h3>
    <table id="history">
      <thead>
        <tr>
          <th scope="col">${t("audit.time")}</th>
          <th scope="col">${t("audit.actor")}</th>
          <th scope="col">${t("audit.action")}</th>
          <th scope="col">${t("audit.outcome")}</th>
        </tr>
      </thead>
      <tbody>
        ${user.history.map(
          (h) =>
            html`<tr>
              <td>${fmtTime(h.at)}</td>
              <td>${h.actor}</td>
              <td>${h.action}</td>
              <td>${h.outcome}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

export function MembersPage({ session }) {
  const [q, setQ] = useState("");
  const [page, setPage] = useState(
    /** @type {{ users: import("../types").Member[] } | undefined} */ (undefined),
  );
  const [open, setOpen] = useState(/** @type {string | undefined} */ (undefined));
  const [error, setError] = useState("");
  const search = (e) => {
    e?.preventDefault();
    setError("");
    api("GET", `/users?q=${enc(q)}&limit=50`)
      .then(setPage)
      .catch((err) => setError(messageOf(err)));
  };
  useEffect(() => void search(), []);
  if (open)
    return html`<h1>${t("members.heading")}</h1>
      <${Member}
        userId=${open}
        canAct=${session.permissions.includes("members.act")}
        onBack=${() => setOpen(undefined)}
      />`;
  return html`<h1>${t("members.heading")}</h1>
    <form role="search" onSubmit=${search}>
      <label
        >${t("members.search")}
        <input id="member-search" type="search" value=${q} onInput=${(e) => setQ(e.currentTarget.value)}
      /></label>
      <button type="submit">${t("members.searchButton")}</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${
      page &&
      html`<table id="members">
        <thead>
          <tr>
            <th scope="col">${t("members.user")}</th>
            <th scope="col">${t("members.name")}</th>
            <th scope="col">${t("members.verification")}</th>
            <th scope="col">${t("members.profession")}</th>
            <th scope="col">${t("members.lastSeen")}</th>
            <th scope="col">${t("members.details")}</th>
          </tr>
        </thead>
        <tbody>
          ${page.users.map(
            (u) =>
              html`<tr>
                <td>${u.user_id}${u.admin ? ` (${t("members.admin")})` : ""}</td>
                <td>${u.display_name ?? "—"}</td>
                <td>${u.verification}</td>
                <td>${u.profession ?? "—"}</td>
                <td>${fmtTime(u.last_seen)}</td>
                <td>
                  <button data-user=${u.user_id} onClick=${() => setOpen(u.user_id)}>
                    ${t("members.details")}
                  </button>
                </td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }`;
}
