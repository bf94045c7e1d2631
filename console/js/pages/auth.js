// First run (the setup token printed by `plinth serve` makes the first admin) and sign-in.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { ErrorBox, Field, fieldError, html, useAction } from "../ui.js";

export function Setup() {
  const [token, setToken] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      await admin.setup(token.trim(), email, password);
      await session.login(email, password);
    });
  };
  const tokenError = error && error.code === "invalid_setup_token" ? "This token is wrong or was already used." : fieldError(error, "token");
  return html`<h1>First run</h1>
    <p>Create the first admin (an owner) with the one-time setup token that <code>plinth serve</code> printed when it started.</p>
    <form onSubmit=${submit} aria-describedby="setup-err">
      <${Field} label="Setup token" value=${token} onInput=${setToken} autocomplete="off" spellcheck="false" required error=${tokenError} />
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} autocomplete="username" required error=${fieldError(error, "email")} />
      <${Field} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="new-password" required
        hint="8 to 128 characters." error=${fieldError(error, "password")} />
      <button type="submit" disabled=${busy}>${busy ? "Creating…" : "Create the first admin"}</button>
    </form>
    <div id="setup-err">${error && !error.fields && !tokenError && html`<${ErrorBox} error=${error} what="create the first admin" />`}</div>
    <p>Already set up? <a href="/_/login">Sign in</a>.</p>`;
}

/** Sign-in; with `again`, over a page whose session ended (the page keeps its state). */
export function Login({ again = false }) {
  const [email, setEmail] = useState(again ? session.email || "" : "");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(() => session.login(email, password));
  };
  // Over a page, the dialog takes the focus (the page behind it is inert).
  useEffect(() => {
    if (again) document.getElementById("relogin-password")?.focus();
  }, []);
  const message =
    error && error.status === 401 ? "Wrong email or password." : error && error.status === 429 ? "Too many attempts; wait a little and try again." : null;
  return html`<h1 id=${again ? "relogin-title" : undefined}>${again ? "Your session ended" : "Sign in"}</h1>
    ${again && html`<p>Sign in again to carry on; what you were doing stays on the page.</p>`}
    <form onSubmit=${submit}>
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} autocomplete="username" required />
      <${Field} id=${again ? "relogin-password" : undefined} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="current-password" required />
      <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
      ${again && html` <button type="button" onClick=${() => session.forget()}>Sign out</button>`}
    </form>
    ${message ? html`<div class="state error" role="alert">${message}</div>` : html`<${ErrorBox} error=${error} what="sign in" />`}
    ${!again && html`<p>First run? <a href="/_/setup">Create the first admin with the setup token</a>.</p>`}`;
}
