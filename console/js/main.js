// The console's shell: routes (client-side, under /_/), the navigation, and the sign-in
// that appears over the current page when the session ends, so an edit in progress
// survives a new sign-in.

import { render } from "../vendor/preact.mjs";
import { useEffect, useState } from "../vendor/hooks.mjs";
import { session } from "./api.js";
import { ErrorBox, Loading, go, html } from "./ui.js";
import { AcceptInvite, Login, Setup } from "./pages/auth.js";

// Each page's module loads when first shown, so the first load (the sign-in form)
// carries only the shell.
const PAGES = {
  overview: () => import("./pages/overview.js").then((m) => m.Overview),
  tenants: () => import("./pages/tenants.js").then((m) => m.Tenants),
  users: () => import("./pages/users.js").then((m) => m.Users),
  data: () => import("./pages/data.js").then((m) => m.Data),
  rules: () => import("./pages/rules.js").then((m) => m.Rules),
  functions: () => import("./pages/functions.js").then((m) => m.Functions),
  keys: () => import("./pages/keys.js").then((m) => m.KeysAndSecrets),
  usage: () => import("./pages/usage.js").then((m) => m.Usage),
  audit: () => import("./pages/audit.js").then((m) => m.Audit),
  admins: () => import("./pages/admins.js").then((m) => m.AdminsAndKeys),
};
const loaded = {};

function Page({ name, ...props }) {
  const [, setReady] = useState(0);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (loaded[name]) return undefined;
    let live = true;
    PAGES[name]().then(
      (c) => {
        loaded[name] = c;
        if (live) setReady((n) => n + 1);
      },
      (e) => live && setError(e),
    );
    return () => (live = false);
  }, [name]);
  const C = loaded[name];
  if (C) return html`<${C} ...${props} />`;
  if (error) return html`<${ErrorBox} error=${error} what="load this page" retry=${() => location.reload()} />`;
  return html`<${Loading} what="the page" />`;
}

const BASE = "/_/";
const ROLE_LABELS = { owner: "owner", admin: "admin", tenant_admin: "tenant admin", viewer: "viewer" };

/** The page for a path below /_/, with its parameters. */
function route(path) {
  const parts = path.slice(BASE.length).split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: "overview" };
  if (parts[0] === "setup") return { page: "setup" };
  if (parts[0] === "login") return { page: "login" };
  if (parts[0] === "invite") return { page: "invite" };
  if (parts[0] === "tenants" && parts.length === 1) return { page: "tenants" };
  if (parts[0] === "audit" && parts.length === 1) return { page: "audit" };
  if (parts[0] === "admins" && parts.length === 1) return { page: "admins" };
  if (parts[0] === "tenants" && parts[2] === "keys") return { page: "keys", slug: parts[1] };
  if (parts[0] === "tenants" && parts[2] === "rules") return { page: "rules", slug: parts[1] };
  if (parts[0] === "tenants" && parts[2] === "functions") return { page: "functions", slug: parts[1] };
  if (parts[0] === "tenants" && parts[2] === "usage") return { page: "usage", slug: parts[1] };
  if (parts[0] === "tenants" && parts[2] === "users") return { page: "users", slug: parts[1] };
  if (parts[0] === "tenants" && parts[2] === "data") return { page: "data", slug: parts[1], collection: parts[3] || null };
  return { page: "missing" };
}

function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener("popstate", on);
    return () => removeEventListener("popstate", on);
  }, []);
  return path;
}

function useSession() {
  const [, tick] = useState(0);
  useEffect(() => {
    const off = session.onChange(() => tick((n) => n + 1));
    // The session may have changed before this effect ran (restore() answers fast on
    // loopback): render once more so that change is not missed.
    tick((n) => n + 1);
    return off;
  }, []);
  return session;
}

/** Links inside the console navigate without a reload. */
function onClick(e) {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const href = a.getAttribute("href");
  if (!href.startsWith(BASE)) return;
  e.preventDefault();
  go(href);
}

function Nav({ r }) {
  const link = (href, label, active) =>
    html`<a href=${href} aria-current=${active ? "page" : undefined}>${label}</a>`;
  return html`<nav aria-label="Console">
    ${link("/_/", "Overview", r.page === "overview")}
    ${link("/_/tenants", "Tenants", r.page === "tenants")}
    ${link("/_/audit", "Audit log", r.page === "audit")}
    ${session.can("write") && link("/_/admins", session.can("owner") ? "Admins and API keys" : "API keys", r.page === "admins")}
    ${r.slug &&
    html`<span class="crumb">
      <span class="sep" aria-hidden="true">›</span><span>${r.slug}</span>
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/users`, "Users", r.page === "users")}
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/data`, "Data", r.page === "data")}
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/rules`, "Rules", r.page === "rules")}
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/functions`, "Functions", r.page === "functions")}
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/keys`, "Keys and secrets", r.page === "keys")}
      ${link(`/_/tenants/${encodeURIComponent(r.slug)}/usage`, "Usage", r.page === "usage")}
    </span>`}
  </nav>`;
}

function App() {
  const path = usePath();
  const s = useSession();
  const r = route(path);
  useEffect(() => {
    // Signed in on the login page (or setup): go where the user was headed.
    if (s.signedIn && (r.page === "login" || r.page === "setup")) {
      const next = new URLSearchParams(location.search).get("next");
      go(next && next.startsWith(BASE) ? next : BASE);
    }
  }, [s.signedIn, r.page]);
  useEffect(() => {
    const titles = {
      overview: "Overview", tenants: "Tenants", users: "Users", data: "Data", rules: "Rules", functions: "Functions", usage: "Usage", keys: "Keys and secrets",
      audit: "Audit log", admins: "Admins and API keys", setup: "First run", login: "Sign in", invite: "Accept an invitation",
    };
    document.title = `${titles[r.page] || "Not found"}${r.slug ? ` · ${r.slug}` : ""} · Plinth console`;
  }, [r.page, r.slug]);

  if (r.page === "setup") return html`<main id="main" class="narrow"><${Setup} /></main>`;
  // Shown even over a signed-in session: accepting signs in as the invitee.
  if (r.page === "invite") return html`<main id="main" class="narrow"><${AcceptInvite} /></main>`;
  if (!s.checked) return html`<main id="main" class="narrow"><p role="status">Loading the console…</p></main>`;
  if (!s.active || r.page === "login") return html`<main id="main" class="narrow"><${Login} /></main>`;

  let page;
  if (PAGES[r.page]) page = html`<${Page} key=${`${r.page}:${r.slug || ""}`} name=${r.page} slug=${r.slug} collection=${r.collection} />`;
  else page = html`<h1>Not found</h1><p>No console page at this address. <a href="/_/">Go to the overview</a>.</p>`;

  return html`<div class="shell">
    <header>
      <a class="skip" href="#main">Skip to content</a>
      <span class="brand">Plinth</span>
      <${Nav} r=${r} />
      <span class="who">
        <span class="email">${s.email}</span>
        <span class="badge" data-testid="role">${ROLE_LABELS[s.role] || s.role}</span>
        <button type="button" onClick=${() => s.logout()}>Log out</button>
      </span>
    </header>
    <main id="main" inert=${s.expired ? true : undefined}>${page}</main>
    ${s.expired &&
    html`<div class="overlay" role="dialog" aria-modal="true" aria-labelledby="relogin-title">
      <div class="dialog"><${Login} again /></div>
    </div>`}
  </div>`;
}

document.addEventListener("click", onClick);
// The page's "Loading the console…" placeholder goes; Preact does not replace it.
const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
session.restore();
window.__plinthConsoleReady = true;
