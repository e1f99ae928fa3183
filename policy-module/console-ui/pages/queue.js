import { useEffect, useState } from "preact/hooks";
import { api, blobUrl, messageOf } from "../api.js";
import { fmtTime, html } from "../html.js";
import { t } from "../i18n.js";

const enc = encodeURIComponent;

function Review({ review, canDecide, onDone }) {
  const [image, setImage] = useState("");
  const [error, setError] = useState("");
  const [reason, setReason] = useState("");
  useEffect(() => {
    let url = "";
    // Shown from memory and released when the review closes: the browser keeps no copy.
    blobUrl(`/reviews/${enc(review.user_id)}/document`)
      .then((u) => setImage((url = u)))
      .catch(() => setError(t("queue.noDocument")));
    return () => url && URL.revokeObjectURL(url);
  }, [review.user_id]);
  const decide = async (decision) => {
    setError("");
    try {
      await api("POST", `/reviews/${enc(review.user_id)}`, { decision, reason });
      onDone(t(decision === "approve" ? "queue.approved" : "queue.rejected", { user: review.user_id }));
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return html`<section class="review" aria-labelledby="review-heading">
    <div>
      <h2 id="review-heading">${t("queue.document", { user: review.user_id })}</h2>
      ${image && html`<img id="document" src=${image} alt=${t("queue.document", { user: review.user_id })} />`}
    </div>
    <div>
      <h3>${t("queue.registryAnswer")} (${review.registry})</h3>
      <table>
        <tbody>
          <tr>
            <th scope="row">${t("queue.claimedName")}</th>
            <td>${review.claimed_name}</td>
          </tr>
          <tr>
            <th scope="row">${t("queue.registeredName")}</th>
            <td id="registered-name">${review.registered_name ?? "—"}</td>
          </tr>
          <tr>
            <th scope="row">${t("queue.profession")}</th>
            <td>${review.profession ?? "—"}</td>
          </tr>
          <tr>
            <th scope="row">${t("queue.specialisms")}</th>
            <td>${(review.specialisms ?? []).join(", ") || "—"}</td>
          </tr>
        </tbody>
      </table>
      ${
        canDecide &&
        html`<label
            >${t("queue.reason")}<br /><textarea
              id="reason"
              rows="3"
              cols="40"
              value=${reason}
              onInput=${(e) => setReason(e.currentTarget.value)}
            ></textarea></label
          ><br />
          <button id="approve" onClick=${() => decide("approve")}>${t("queue.approve")}</button>
          <button id="reject" class="danger" onClick=${() => decide("reject")}>${t("queue.reject")}</button>`
      }
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </div>
  </section>`;
}

export function QueuePage({ session }) {
  const [reviews, setReviews] = useState(/** @type {import("../types").Review[] | undefined} */ (undefined));
  const [open, setOpen] = useState(/** @type {import("../types").Review | undefined} */ (undefined));
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = () =>
    api("GET", "/reviews")
      .then((r) => setReviews(r.reviews))
      .catch((err) => setError(messageOf(err)));
  useEffect(() => void load(), []);
  return html`<h1>${t("queue.heading")}</h1>
    ${message && html`<p class="ok" role="status" id="queue-message">${message}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${
      reviews === undefined
        ? html`<p>${t("app.loading")}</p>`
        : reviews.length === 0
          ? html`<p id="queue-empty">${t("queue.empty")}</p>`
          : html`<table id="reviews">
              <thead>
                <tr>
                  <th scope="col">${t("queue.user")}</th>
                  <th scope="col">${t("queue.registry")}</th>
                  <th scope="col">${t("queue.since")}</th>
                  <th scope="col"><span class="sr">${t("queue.open")}</span></th>
                </tr>
              </thead>
              <tbody>
                ${reviews.map(
                  (r) =>
                    html`<tr>
                      <td>${r.user_id}</td>
                      <td>${r.registry}</td>
                      <td>${fmtTime(r.since)}</td>
                      <td>
                        <button data-user=${r.user_id} onClick=${() => setOpen(r)}>${t("queue.open")}</button>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
    }
    ${
      open &&
      html`<${Review}
        key=${open.user_id}
        review=${open}
        canDecide=${session.permissions.includes("reviews.decide")}
        onDone=${(m) => {
          setMessage(m);
          setOpen(undefined);
          void load();
        }}
      />`
    }`;
}
