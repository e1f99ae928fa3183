import { useEffect, useState } from "preact/hooks";
import { api, messageOf } from "../api.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

// Discoverable groups (docs/groups.md): the organisation's listed groups and their pending
// requests to join (knocks). Org admins approve (the room-admin bot invites; the group's rule
// still decides), refuse with a reason (the knock is kicked with it) or unlist a group.
const enc = encodeURIComponent;

function Knock({ group, knock, canManage, onDone }) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const who = knock.display_name ? `${knock.display_name} (${knock.user_id})` : knock.user_id;
  const act = async (path, body, done) => {
    setBusy(true);
    try {
      await api("POST", `/groups/${enc(group.room_id)}/knocks/${enc(knock.user_id)}/${path}`, body);
      onDone(done, "");
    } catch (err) {
      onDone("", messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  const groupName = group.name ?? group.room_id;
  return html`<tr data-user=${knock.user_id}>
    <td>${who}</td>
    <td>${knock.organisation}</td>
    <td class="profession">${knock.profession ?? t("groups:notVerified")}</td>
    <td>${knock.reason ?? "—"}</td>
    <td>${fmtTime(knock.since)}</td>
    <td class="rule">${knock.admissible ? t("groups:admissible") : knock.why_not}</td>
    ${
      canManage &&
      html`<td>
        <button
          type="button"
          class="approve"
          disabled=${busy}
          onClick=${() => act("approve", {}, t("groups:approved", { user: knock.user_id, group: groupName }))}
        >
          ${t("groups:approve")}
        </button>
        <form
          class="refuse-form"
          onSubmit=${(e) => {
            e.preventDefault();
            void act("refuse", { reason }, t("groups:refused", { user: knock.user_id }));
          }}
        >
          <input
            class="refuse-reason"
            aria-label=${t("groups:refuseReason", { user: knock.user_id })}
            placeholder=${t("groups:reasonPlaceholder")}
            value=${reason}
            onInput=${(e) => setReason(e.currentTarget.value)}
            required
            maxlength="500"
          />
          <button type="submit" class="refuse danger" disabled=${busy}>${t("groups:refuse")}</button>
        </form>
      </td>`
    }
  </tr>`;
}

function Group({ group, canManage, onUnlisted }) {
  const [knocks, setKnocks] = useState(
    /** @type {import("../types").GroupKnock[] | undefined} */ (undefined),
  );
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = () =>
    api("GET", `/groups/${enc(group.room_id)}/knocks`)
      .then((r) => setKnocks(r.knocks))
      .catch((err) => setError(messageOf(err)));
  useEffect(() => void load(), [group.room_id]);
  const name = group.name ?? group.room_id;
  const headingId = `group-${group.room_id.replace(/[^A-Za-z0-9]/g, "")}`;
  const unlist = async () => {
    if (!confirm(t("groups:confirmUnlist", { group: name }))) return;
    setError("");
    try {
      await api("POST", `/groups/${enc(group.room_id)}/unlist`, { confirm: group.room_id });
      onUnlisted(t("groups:unlisted", { group: name }));
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return html`<section class="group" data-room=${group.room_id} aria-labelledby=${headingId}>
    <h2 id=${headingId}>${name}</h2>
    <dl>
      <dt>${t("groups:scope")}</dt>
      <dd class="scope">${t(`groups:scope_${group.scope}`)}</dd>
      <dt>${t("groups:professions")}</dt>
      <dd class="professions">${group.professions.join(", ") || t("groups:anyProfession")}</dd>
      ${
        group.description &&
        html`<dt>${t("groups:description")}</dt>
          <dd>${group.description}</dd>`
      }
      <dt>${t("groups:members")}</dt>
      <dd class="members">${group.members}</dd>
    </dl>
    ${
      !group.in_directory &&
      html`<p class="not-in-directory">${t("groups:notInDirectory", { rule: group.join_rule ?? "—" })}</p>`
    }
    ${
      canManage &&
      html`<button type="button" class="unlist danger" onClick=${unlist}>${t("groups:unlist")}</button>`
    }
    <h3>${t("groups:knocks")}</h3>
    <button type="button" class="refresh" onClick=${load}>${t("groups:refresh")}</button>
    ${message && html`<p class="ok group-message" role="status">${message}</p>`}
    ${error && html`<p class="error group-error" role="alert">${error}</p>`}
    ${knocks && knocks.length === 0 && html`<p class="no-knocks">${t("groups:noKnocks")}</p>`}
    ${
      knocks &&
      knocks.length > 0 &&
      html`<table class="knocks">
        <thead>
          <tr>
            <th scope="col">${t("groups:who")}</th>
            <th scope="col">${t("groups:organisation")}</th>
            <th scope="col">${t("groups:profession")}</th>
            <th scope="col">${t("groups:theirReason")}</th>
            <th scope="col">${t("groups:since")}</th>
            <th scope="col">${t("groups:rule")}</th>
            ${canManage && html`<th scope="col">${t("groups:decision")}</th>`}
          </tr>
        </thead>
        <tbody>
          ${knocks.map(
            (k) =>
              html`<${Knock}
                key=${k.user_id}
                group=${group}
                knock=${k}
                canManage=${canManage}
                onDone=${(done, failed) => {
                  setMessage(done);
                  setError(failed);
                  if (done) void load();
                }}
              />`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}

export function GroupsPage({ session }) {
  const [groups, setGroups] = useState(
    /** @type {import("../types").ListedGroup[] | undefined} */ (undefined),
  );
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const canManage = session.permissions.includes("groups.manage");
  const load = () =>
    api("GET", "/groups")
      .then((r) => setGroups(r.groups))
      .catch((err) => setError(messageOf(err)));
  useEffect(() => void load(), []);
  return html`<h1>${t("groups:heading")}</h1>
    <p>${t("groups:intro")}</p>
    ${!canManage && html`<p id="groups-read-only">${t("groups:readOnly")}</p>`}
    ${message && html`<p class="ok" role="status" id="groups-message">${message}</p>`}
    ${error && html`<p class="error" role="alert" id="groups-error">${error}</p>`}
    ${groups && groups.length === 0 && html`<p id="groups-none">${t("groups:none")}</p>`}
    ${
      groups &&
      groups.map(
        (g) =>
          html`<${Group}
            key=${g.room_id}
            group=${g}
            canManage=${canManage}
            onUnlisted=${(done) => {
              setMessage(done);
              void load();
            }}
          />`,
      )
    }`;
}
