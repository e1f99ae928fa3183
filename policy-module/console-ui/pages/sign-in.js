import { useState } from "preact/hooks";
import { signIn } from "../api.js";
import { html } from "../html.js";
import { t } from "../i18n.js";

export function SignInPage({ onSignedIn }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError("");
    try {
      onSignedIn(await signIn(String(form.get("user")), String(form.get("password"))));
    } catch (err) {
      setError(t("signIn.failed", { reason: err.message }));
    } finally {
      setBusy(false);
    }
  };
  return html`<h1>${t("signIn.heading")}</h1>
    <p>${t("signIn.intro", { server: location.host })}</p>
    <form id="sign-in" onSubmit=${submit}>
      <label>${t("signIn.user")} <input name="user" id="user" autocomplete="username" required /></label>
      <label
        >${t("signIn.password")}
        <input name="password" id="password" type="password" autocomplete="current-password" required
      /></label>
      <button type="submit" disabled=${busy}>${busy ? t("signIn.busy") : t("signIn.submit")}</button>
    </form>
    ${error && html`<p class="error" role="alert" id="sign-in-error">${error}</p>`}`;
}
