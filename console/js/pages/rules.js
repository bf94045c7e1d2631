// The tenant's rule set: the active version in an editor; installing it is validated
// whole by the server, whose errors (collection, operation, line:column) are listed and
// move the cursor to their place. A refused set leaves the active one in force.

import { useEffect, useRef, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { ErrorBox, Loading, html, useAction, useLoad } from "../ui.js";

/** The offset of (line, column), both from 1, in `text`. */
function offsetOf(text, line, column) {
  const lines = text.split("\n");
  let at = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
  return Math.min(at + Math.max(column - 1, 0), text.length);
}

/** A line diff of `a` to `b` (longest common subsequence): [[" " | "-" | "+", line]]. */
export function diffLines(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  if (x.length * y.length > 4_000_000) return null;
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) out.push([" ", x[i++], j++]);
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push(["+", y[j++]]);
    else out.push(["-", x[i++]]);
  }
  return out;
}

function Diff({ from, to }) {
  const d = diffLines(from, to);
  if (!d) return html`<p class="muted">Too large to compare here.</p>`;
  return html`<pre class="code diff" data-testid="rules-diff" aria-label="Changes against the active version">${d.map(
    ([op, line], k) => html`<span key=${k} class=${op === "+" ? "add" : op === "-" ? "del" : ""}>${op} ${line}\n</span>`,
  )}</pre>`;
}

export function Rules({ slug }) {
  const active = useLoad(() => admin.rules(slug), [slug]);
  const [text, setText] = useState(null);
  const [installed, setInstalled] = useState(null);
  const [showDiff, setShowDiff] = useState(false);
  const install = useAction();
  const editor = useRef(null);
  useEffect(() => {
    if (active.data && text === null) setText(active.data.source);
  }, [active.data]);
  const submit = async (e) => {
    e.preventDefault();
    setInstalled(null);
    const r = await install.run(() => admin.installRules(slug, text));
    if (r) {
      setInstalled(r);
      active.reload();
    }
  };
  const jump = (err) => {
    const at = offsetOf(text, err.line, err.column);
    editor.current.focus();
    editor.current.setSelectionRange(at, at);
  };
  const errors = install.error && install.error.code === "invalid_rules" ? install.error.problem.errors || [] : null;
  const changed = active.data && text !== null && text !== active.data.source;
  const write = session.can("write");
  if (active.error && !active.data) return html`<h1>Rules</h1><${ErrorBox} error=${active.error} what="load the rules" retry=${active.reload} />`;
  if (!active.data || text === null) return html`<h1>Rules</h1><${Loading} what="the rules" />`;
  return html`<h1>Rules <small class="muted">of ${slug}</small></h1>
    <p class="muted">${active.data.version === 0
      ? "No rule set installed yet: every end-user request is denied. Write one below (TOML, one table per collection) and install it."
      : `Active: version ${active.data.version}.`}
      The language is described in docs/rules.md.${write ? "" : " You can read the rules, not change them."}</p>
    <form onSubmit=${submit}>
      <label for="rules-source" class="label">Rule set (TOML)</label>
      <textarea id="rules-source" ref=${editor} class="code" rows="18" spellcheck="false" value=${text} readonly=${!write}
        placeholder=${'[notes]\nread = "auth != null && doc.owner == auth.uid"\ncreate = "auth != null && new.owner == auth.uid"'}
        aria-invalid=${errors && errors.length ? "true" : undefined} aria-describedby="rules-errors"
        onInput=${(e) => setText(e.target.value)} data-testid="rules-source"></textarea>
      ${write && html`<div class="row wrap">
        <button type="submit" disabled=${install.busy || !text.trim()}>${install.busy ? "Installing…" : "Install"}</button>
        <button type="button" disabled=${!changed} onClick=${() => setText(active.data.source)}>Revert to the active version</button>
        <button type="button" disabled=${!changed} aria-expanded=${showDiff && changed} onClick=${() => setShowDiff(!showDiff)}>
          ${showDiff && changed ? "Hide changes" : "Show changes"}</button>
        ${changed && html`<small class="muted">Changed, not installed.</small>`}
      </div>`}
    </form>
    ${showDiff && changed && html`<${Diff} from=${active.data.source} to=${text} />`}
    <div id="rules-errors">
      ${errors &&
      html`<div class="state error" role="alert" data-testid="rules-errors"><strong>Not installed: ${errors.length} error${errors.length === 1 ? "" : "s"}.</strong>
        The active version stays in force.
        <ul>${errors.map((e, i) => html`<li key=${i}><button type="button" class="link" onClick=${() => jump(e)}>
          ${e.collection ? `[${e.collection}]` : ""}${e.operation ? ` ${e.operation}` : ""}, line ${e.line} column ${e.column}</button>: ${e.message}</li>`)}</ul>
      </div>`}
      ${install.error && !errors && html`<${ErrorBox} error=${install.error} what="install the rules" />`}
      ${installed &&
      html`<div class="state info" role="status" data-testid="rules-installed">Installed version ${installed.version}
        (${installed.collections.length ? installed.collections.join(", ") : "no collections"}).
        ${installed.warnings.length > 0 && html`<ul>${installed.warnings.map((w, i) => html`<li key=${i}>${w}</li>`)}</ul>`}</div>`}
    </div>`;
}
