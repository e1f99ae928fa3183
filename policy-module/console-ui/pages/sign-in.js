import { useEffect, useState } from "preact/hooks";
import { loginFlows, signIn, signInWithToken, ssoUrl, messageOf } from "../api.js";
import { html } from "../html.js";
import { t } from "../i18n.js";

export function SignInPage({ onSignedIn }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [flows, setFlows] = useState(
    /** @type {{ password: boolean, providers: { id: string, name: string }[] }} */ ({
      password: true,
      providers: [],
    }),
  );
  const attempt = async (signingIn) => {
    setBusy(true);
    setError("");
    try {
      onSignedIn(await signingIn());
    } catch (err) {
      setError(t("signIn.failed", { reason: messageOf(err) }));
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    loginFlows()
      .then(setFlows)
      .catch(() => undefined);
    // Back from the organisation's single sign-on: the login token is used once and leaves the URL.
    const token = new URLSearchParams(location.search).get("loginToken");
    if (token) {
      history.replaceState(null, "", location.pathname);
      void attempt(() => signInWithToken(token));
    }
  }, []);
  const submit = (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    void attempt(() => signIn(String(form.get("user")), String(form.get("password"))));
  };
  return html`<h1>${t("signIn.heading")}</h1>
    <p>${t("signIn.intro", { server: location.host })}</p>
    ${flows.providers.map(
      (p) =>
        html`<p>
          <a class="button sso" id=${`sso-${p.id}`} href=${ssoUrl(p.id)}
            >${t("signIn.sso", { provider: p.name })}</a
          >
        </p>`,
    )}
    ${
      flows.password &&
      html`<form id="sign-in" onSubmit=${submit}>
        <label>${t("signIn.user")} <input name="user" id="user" autocomplete="username" required /></label>
        <label
          >${t("signIn.password")}
          <input name="password" id="password" type="password" autocomplete="current-password" required
        /></label>
        <button type="submit" disabled=${busy}>${busy ? t("signIn.busy") : t("signIn.submit")}</button>
      </form>`
    }
    ${error && html`<p class="error" role="alert" id="sign-in-error">${error}</p>`}`;
}
