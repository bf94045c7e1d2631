// Functions of a tenant: the deploy history (activate an earlier version = roll back,
// confirmed), uploading a bundle folder, the invocation log (by function; duration,
// outcome, log lines) and dead letters with retry.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { Empty, ErrorBox, Field, Loading, fmtTime, html, useAction, useDebounced, useLoad } from "../ui.js";

/** The folder's files as a deploy takes them: paths relative to the folder, text. */
async function bundleOf(fileList) {
  const files = {};
  for (const f of fileList) {
    const rel = (f.webkitRelativePath || f.name).split("/").slice(1).join("/") || f.name;
    if (rel.startsWith(".") || rel.includes("/.")) continue;
    files[rel] = await f.text();
  }
  return files;
}

function Upload({ slug, onDeployed }) {
  const [files, setFiles] = useState(null);
  const up = useAction();
  const pick = async (e) => {
    up.setError(null);
    setFiles(await bundleOf(e.target.files));
  };
  const submit = async (e) => {
    e.preventDefault();
    const d = await up.run(() => admin.deploy(slug, files));
    if (d) {
      setFiles(null);
      e.target.reset();
      onDeployed(d);
    }
  };
  const errors = up.error && up.error.code === "invalid_bundle" ? up.error.problem.errors || [] : null;
  const names = files ? Object.keys(files) : [];
  return html`<form class="card" onSubmit=${submit} aria-labelledby="upload-h">
    <h3 id="upload-h">Upload a bundle</h3>
    <div class="field">
      <label for="bundle">Bundle folder (plinth.toml, rules, functions/*.js)</label>
      <input id="bundle" type="file" webkitdirectory multiple onChange=${pick} data-testid="bundle" />
    </div>
    ${files && html`<p class="muted small" role="status">${names.length} file${names.length === 1 ? "" : "s"}: ${names.join(", ")}</p>`}
    <button type="submit" disabled=${!files || !names.length || up.busy}>${up.busy ? "Deploying…" : "Deploy"}</button>
    ${errors &&
    html`<div class="state error" role="alert" data-testid="bundle-errors"><strong>Not deployed.</strong> ${up.error.message}
      ${errors.length > 0 && html`<ul>${errors.map((e, i) => html`<li key=${i}>${typeof e === "string" ? e : e && e.message ? `${[e.file || e.path, e.line && `${e.line}:${e.column}`].filter(Boolean).join(":")} ${e.message}` : JSON.stringify(e)}</li>`)}</ul>`}</div>`}
    ${up.error && !errors && html`<${ErrorBox} error=${up.error} what="deploy the bundle" />`}
  </form>`;
}

function Deploys({ slug }) {
  const list = useLoad(() => admin.deploys(slug), [slug]);
  const [confirm, setConfirm] = useState(null);
  const act = useAction();
  const active = list.data && list.data.items.find((d) => d.active);
  const activate = async (v) => {
    if ((await act.run(() => admin.activate(slug, v))) !== undefined) {
      setConfirm(null);
      list.reload();
    }
  };
  return html`<section aria-labelledby="deploys-h">
    <h2 id="deploys-h">Deploys</h2>
    ${session.can("write") && html`<${Upload} slug=${slug} onDeployed=${() => list.reload()} />`}
    ${list.loading && !list.data && html`<${Loading} what="deploys" />`}
    <${ErrorBox} error=${list.error} what="load the deploys" retry=${list.reload} />
    <${ErrorBox} error=${act.error} what="activate the version" />
    ${list.data && list.data.items.length === 0 && html`<${Empty}>Nothing deployed yet${session.can("write") ? ": upload a bundle folder above, or run" : ". An admin deploys with"} <code>plinth deploy DIR --tenant ${slug} --server …</code>.</${Empty}>`}
    ${list.data && list.data.items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Deploys, newest first</caption>
      <thead><tr><th scope="col" class="num">Version</th><th scope="col">Deployed</th><th scope="col">By</th><th scope="col">State</th></tr></thead>
      <tbody>${list.data.items.map((d) => html`<tr key=${d.version} data-testid="deploy-row">
        <th scope="row" class="num">${d.version}</th><td>${fmtTime(d.created_at)}</td><td>${d.created_by}</td>
        <td>${d.active
          ? html`<span class="badge">active</span>`
          : confirm === d.version
            ? html`<span role="group" aria-label="Confirm">${active && d.version < active.version ? "Roll back" : "Switch"} to version ${d.version}?
                <button type="button" disabled=${act.busy} onClick=${() => activate(d.version)}>Yes, activate</button>
                <button type="button" onClick=${() => setConfirm(null)}>No</button></span>`
            : session.can("write")
              ? html`<button type="button" onClick=${() => setConfirm(d.version)} aria-label=${`Activate version ${d.version}`}>Activate</button>`
              : ""}</td>
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

function Invocations({ slug }) {
  const [fn, setFn] = useState("");
  const name = useDebounced(fn.trim(), 300);
  const first = useLoad(() => admin.invocations(slug, { function: name, limit: 50 }), [slug, name]);
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const more = useAction();
  useEffect(() => {
    if (first.data) {
      setItems(first.data.items);
      setNext(first.data.next_cursor);
    }
  }, [first.data]);
  const loadMore = async () => {
    const p = await more.run(() => admin.invocations(slug, { function: name, cursor: next, limit: 50 }));
    if (p) {
      setItems((xs) => [...xs, ...p.items]);
      setNext(p.next_cursor);
    }
  };
  return html`<section aria-labelledby="inv-h">
    <div class="row wrap between"><h2 id="inv-h">Invocation log</h2><button type="button" onClick=${first.reload}>Refresh</button></div>
    <div role="search"><${Field} label="Function" value=${fn} onInput=${setFn} placeholder="all functions" autocomplete="off" spellcheck="false" /></div>
    ${first.loading && html`<${Loading} what="invocations" />`}
    <${ErrorBox} error=${first.error} what="load the invocation log" retry=${first.reload} />
    ${items && items.length === 0 && !first.loading && html`<${Empty}>No invocations${name ? ` of ${name}` : ""} yet: they appear when an HTTP function is called or a hook runs.</${Empty}>`}
    ${items && items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Invocations, newest first</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Function</th><th scope="col">Trigger</th><th scope="col" class="num">Version</th>
        <th scope="col" class="num">Duration</th><th scope="col">Outcome</th><th scope="col">Logs and error</th></tr></thead>
      <tbody>${items.map((i) => html`<tr key=${i.id} data-testid="invocation-row">
        <td>${fmtTime(i.started_at)}</td><th scope="row">${i.function}</th><td>${i.trigger}</td><td class="num">${i.version}</td>
        <td class="num">${(i.duration_us / 1000).toFixed(1)} ms</td>
        <td>${i.outcome === "ok" ? "ok" : html`<span class="badge warn">${i.outcome}</span>`}</td>
        <td>${i.error && html`<div class="field-error">${i.error}</div>`}
          ${Array.isArray(i.logs) && i.logs.length > 0 &&
          html`<details><summary>${i.logs.length} log line${i.logs.length === 1 ? "" : "s"}</summary>
            <pre class="code">${i.logs.map((l) => `${l.level || ""} ${l.message ?? JSON.stringify(l)}`).join("\n")}</pre></details>`}</td>
      </tr>`)}</tbody>
    </table></div>`}
    <${ErrorBox} error=${more.error} what="load more" />
    ${next && html`<button type="button" disabled=${more.busy} onClick=${loadMore}>Load older invocations</button>`}
  </section>`;
}

function DeadLetters({ slug }) {
  const list = useLoad(() => admin.jobs(slug, { state: "dead", limit: 100 }), [slug]);
  const retry = useAction();
  return html`<section aria-labelledby="dead-h">
    <h2 id="dead-h">Dead letters</h2>
    ${list.loading && !list.data && html`<${Loading} what="dead letters" />`}
    <${ErrorBox} error=${list.error} what="load the dead letters" retry=${list.reload} />
    <${ErrorBox} error=${retry.error} what="retry the job" />
    ${list.data && list.data.items.length === 0 && html`<${Empty}>No dead letters: every after hook ran or is still being retried.</${Empty}>`}
    ${list.data && list.data.items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">After-hook jobs out of attempts</caption>
      <thead><tr><th scope="col">Function</th><th scope="col">Created</th><th scope="col" class="num">Attempts</th><th scope="col">Last error</th>${session.can("write") && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${list.data.items.map((j) => html`<tr key=${j.id} data-testid="dead-row">
        <th scope="row">${j.function}</th><td>${fmtTime(j.created_at)}</td><td class="num">${j.attempts}/${j.max_attempts}</td>
        <td class="field-error">${j.last_error || ""}</td>
        ${session.can("write") && html`<td><button type="button" disabled=${retry.busy} onClick=${async () => { if ((await retry.run(() => admin.retryJob(slug, j.id))) !== undefined) list.reload(); }}>Retry</button></td>`}
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

export function Functions({ slug }) {
  return html`<h1>Functions <small class="muted">of ${slug}</small></h1>
    <${Deploys} slug=${slug} />
    <${Invocations} slug=${slug} />
    <${DeadLetters} slug=${slug} />`;
}
