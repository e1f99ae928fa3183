import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { html } from "../html.js";
import { t } from "../i18n.js";

// Broadcast channels (docs/channels.md): create, post (urgent or not), and each urgent post's
// read and acknowledged counts with the lists of who.
const list = (s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
const enc = encodeURIComponent;

function Urgent({ roomId }) {
  const [posts, setPosts] = useState(/** @type {import("../types").UrgentPost[] | undefined} */ (undefined));
  const [error, setError] = useState("");
  const load = () =>
    api("GET", `/channels/${enc(roomId)}/urgent`)
      .then((r) => setPosts(r.posts))
      .catch((err) => setError(err.message));
  useEffect(() => void load(), [roomId]);
  if (error) return html`<p class="error" role="alert">${error}</p>`;
  if (!posts) return html`<p>${t("app.loading")}</p>`;
  return html`<h3>${t("channels:urgentPosts")}</h3>
    <button onClick=${load}>${t("channels:refresh")}</button>
    ${
      posts.length === 0
        ? html`<p>${t("channels:noUrgent")}</p>`
        : html`<table class="urgent-posts">
            <thead>
              <tr>
                <th scope="col">${t("channels:sentAt")}</th>
                <th scope="col">${t("channels:members")}</th>
                <th scope="col">${t("channels:read")}</th>
                <th scope="col">${t("channels:acknowledged")}</th>
              </tr>
            </thead>
            <tbody>
              ${posts.map(
                (p) =>
                  html`<tr data-event=${p.event_id}>
                    <td>${new Date(p.sent_at).toLocaleString(document.documentElement.lang)}</td>
                    <td>${p.members}</td>
                    <td class="read">
                      <strong>${p.read.count}</strong>
                      <details>
                        <summary>${t("channels:who")}</summary>
                        ${p.read.users.join(", ")}
                      </details>
                    </td>
                    <td class="acknowledged">
                      <strong>${p.acknowledged.count}</strong>
                      <details>
                        <summary>${t("channels:who")}</summary>
                        ${p.acknowledged.users.join(", ")}
                      </details>
                    </td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }`;
}

function Channel({ channel }) {
  const [body, setBody] = useState("");
  const [urgent, setUrgent] = useState(false);
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const [rev, setRev] = useState(0);
  const id = `post-${channel.room_id.replace(/[^A-Za-z0-9]/g, "")}`;
  return html`<section class="channel">
    <h2>${channel.name}</h2>
    <p>${channel.scope} · ${channel.professions.join(", ") || "*"} · ${channel.publishers.join(", ")}</p>
    <form
      onSubmit=${async (e) => {
        e.preventDefault();
        setError("");
        setMessage("");
        try {
          await api("POST", `/channels/${enc(channel.room_id)}/posts`, { body, urgent });
          setBody("");
          setMessage(t("channels:posted"));
          setRev((n) => n + 1);
        } catch (err) {
          setError(messageOf(err));
        }
      }}
    >
      <label for=${`${id}-body`}>${t("channels:message")}</label>
      <textarea id=${`${id}-body`} value=${body} onInput=${(e) => setBody(e.currentTarget.value)} required />
      <label
        ><input type="checkbox" checked=${urgent} onChange=${(e) => setUrgent(e.currentTarget.checked)} />
        ${t("channels:urgent")}</label
      >
      <button type="submit">${t("channels:post")}</button>
    </form>
    ${message && html`<p class="ok" role="status">${message}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <${Urgent} roomId=${channel.room_id} key=${rev} />
  </section>`;
}

export function ChannelsPage() {
  const [channels, setChannels] = useState(
    /** @type {import("../types").Channel[] | undefined} */ (undefined),
  );
  const [form, setForm] = useState({
    name: "",
    scope: "organisation",
    organisations: "",
    professions: "",
    publishers: "",
    mandatory: false,
  });
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = () =>
    api("GET", "/channels")
      .then((r) => setChannels(r.channels))
      .catch((err) => setError(err.message));
  useEffect(() => void load(), []);
  const field = (k) => (e) =>
    setForm({
      ...form,
      [k]: e.currentTarget.type === "checkbox" ? e.currentTarget.checked : e.currentTarget.value,
    });
  return html`<h1>${t("channels:heading")}</h1>
    <p>${t("channels:intro")}</p>
    <form
      id="create-channel"
      onSubmit=${async (e) => {
        e.preventDefault();
        setError("");
        setMessage("");
        try {
          const c = await api("POST", "/channels", {
            name: form.name,
            scope: form.scope,
            organisations: list(form.organisations),
            professions: list(form.professions),
            publishers: list(form.publishers),
            mandatory: form.mandatory,
          });
          setMessage(t("channels:created", { name: c.name, count: c.invited }));
          await load();
        } catch (err) {
          setError(messageOf(err));
        }
      }}
    >
      <label
        >${t("channels:name")} <input id="channel-name" value=${form.name} onInput=${field("name")} required
      /></label>
      <label
        >${t("channels:scope")}
        <select id="channel-scope" value=${form.scope} onChange=${field("scope")}>
          <option value="organisation">${t("channels:scope_organisation")}</option>
          <option value="network">${t("channels:scope_network")}</option>
        </select></label
      >
      <label
        >${t("channels:organisations")}
        <input id="channel-organisations" value=${form.organisations} onInput=${field("organisations")}
      /></label>
      <label
        >${t("channels:professions")}
        <input id="channel-professions" value=${form.professions} onInput=${field("professions")}
      /></label>
      <label
        >${t("channels:publishers")}
        <input id="channel-publishers" value=${form.publishers} onInput=${field("publishers")}
      /></label>
      <label
        ><input
          id="channel-mandatory"
          type="checkbox"
          checked=${form.mandatory}
          onChange=${field("mandatory")}
        />
        ${t("channels:mandatory")}</label
      >
      <button type="submit">${t("channels:create")}</button>
    </form>
    ${message && html`<p class="ok" role="status" id="channels-message">${message}</p>`}
    ${error && html`<p class="error" role="alert" id="channels-error">${error}</p>`}
    ${channels && channels.length === 0 && html`<p>${t("channels:none")}</p>`}
    ${channels && channels.map((c) => html`<${Channel} channel=${c} key=${c.room_id} />`)}`;
}
