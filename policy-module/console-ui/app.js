import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, currentSession, onSessionExpired } from "./api.js";
import { html } from "./html.js";
import { initI18n, LANGUAGES, setLanguage, t } from "./i18n.js";
import { AuditPage } from "./pages/audit.js";
import { ChannelsPage } from "./pages/channels.js";
import { DepartmentsPage } from "./pages/departments.js";
import { GroupsPage } from "./pages/groups.js";
import { MembersPage } from "./pages/members.js";
import { QueuePage } from "./pages/queue.js";
import { RolesPage } from "./pages/roles.js";
import { SignInPage } from "./pages/sign-in.js";
import { StatusPage } from "./pages/status.js";

const ROOT = "/_medmesh/console";
/** @type {{ path: string, label: string, needs: string, page: (props: { session: import("./types").Session }) => unknown }[]} */
const PAGES = [
  { path: "queue", label: "nav.queue", needs: "reviews.read", page: QueuePage },
  { path: "members", label: "nav.members", needs: "members.read", page: MembersPage },
  { path: "audit", label: "nav.audit", needs: "audit.read", page: AuditPage },
  { path: "status", label: "nav.status", needs: "status.read", page: StatusPage },
  { path: "roles", label: "nav.roles", needs: "roles.manage", page: RolesPage },
  { path: "channels", label: "channels:nav", needs: "channels.manage", page: ChannelsPage },
  { path: "departments", label: "nav.departments", needs: "departments.manage", page: DepartmentsPage },
  { path: "groups", label: "groups:nav", needs: "groups.read", page: GroupsPage },
];

const pathNow = () => location.pathname.slice(ROOT.length).replace(/^\/+/, "").split("/")[0] ?? "";

function LanguagePicker({ onChange }) {
  return html`<label>
    ${t("app.language")}${" "}
    <select
      id="language"
      value=${document.documentElement.lang}
      onChange=${async (e) => {
        await setLanguage(e.currentTarget.value);
        onChange();
      }}
    >
      ${LANGUAGES.map((l) => html`<option value=${l.code} lang=${l.code}>${l.name}</option>`)}
    </select>
  </label>`;
}

function App() {
  const [session, setSession] = useState(/** @type {import("./types").Session | undefined} */ (undefined));
  const [checked, setChecked] = useState(false);
  const [path, setPath] = useState(pathNow());
  const [, setRev] = useState(0);
  const [notice, setNotice] = useState("");
  const rerender = () => setRev((n) => n + 1);

  useEffect(() => {
    onSessionExpired(() => {
      setSession(undefined);
      setNotice(t("error.expired"));
    });
    currentSession().then((s) => {
      setSession(s);
      setChecked(true);
    });
    const pop = () => setPath(pathNow());
    addEventListener("popstate", pop);
    return () => removeEventListener("popstate", pop);
  }, []);

  const go = (/** @type {string} */ p) => {
    history.pushState({}, "", `${ROOT}/${p}`);
    setPath(p);
  };
  if (!checked) return html`<main><p>${t("app.loading")}</p></main>`;
  if (!session)
    return html`<header>
        <strong>${t("app.title")}</strong><span class="who"></span><${LanguagePicker} onChange=${rerender} />
      </header>
      <main>
        ${notice && html`<p class="error" role="alert">${notice}</p>`}
        <${SignInPage}
          onSignedIn=${(s) => {
            setNotice("");
            setSession(s);
            const first = PAGES.find((p) => s.permissions.includes(p.needs));
            if (!PAGES.some((p) => p.path === path)) go(first?.path ?? "status");
          }}
        />
      </main>`;
  const allowed = PAGES.filter((p) => session.permissions.includes(p.needs));
  const current = allowed.find((p) => p.path === path) ?? allowed[0];
  const Page = current.page;
  return html`<header>
      <strong>${t("app.title")}</strong>
      <nav aria-label=${t("app.nav")}>
        <ul>
          ${allowed.map(
            (p) =>
              html`<li>
                <a
                  href=${`${ROOT}/${p.path}`}
                  aria-current=${p === current ? "page" : undefined}
                  onClick=${(e) => {
                    e.preventDefault();
                    go(p.path);
                  }}
                  >${t(p.label)}</a
                >
              </li>`,
          )}
        </ul>
      </nav>
      <span class="who"
        >${t("app.signedInAs", { user: session.user_id, role: t(`role.${session.role}`) })}</span
      >
      <${LanguagePicker} onChange=${rerender} />
      <button
        id="sign-out"
        onClick=${async () => {
          await api("DELETE", "/session").catch(() => undefined);
          setSession(undefined);
        }}
      >
        ${t("app.signOut")}
      </button>
    </header>
    <main id="main"><${Page} session=${session} key=${current.path} /></main>`;
}

await initI18n();
const root = document.getElementById("app");
if (!root) throw new Error("the console page has no #app element");
render(html`<${App} />`, root);
