// The data browser of a tenant: its collections with counts, a collection's documents
// (a CEL filter with the server's line:column errors, order, keyset paging), a JSON
// editor whose saves are conditional (If-Match) so a concurrent change shows as a
// conflict with the newer version, create and delete, and live updates of the visible
// page through the realtime feed. A viewer browses the same pages read-only (a read
// token: the server refuses its writes; the page shows no control that would write).

import { useEffect, useRef, useState } from "../../vendor/hooks.mjs";
import { admin, session, tenantApi } from "../api.js";
import { Empty, ErrorBox, Field, Loading, fmtTime, go, html, useAction, useLoad } from "../ui.js";

const PAGE = 50;
const enc = encodeURIComponent;

function preview(data) {
  const s = JSON.stringify(data);
  return s.length > 120 ? `${s.slice(0, 117)}…` : s;
}

/** The JSON text's problem, or null when it is a JSON object. */
function jsonProblem(text) {
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? null : "A document is a JSON object: { … }.";
  } catch (e) {
    return `Not valid JSON: ${e.message}`;
  }
}

/** Follows the collection's changes; `onChanges(frames)` with those of the last 200 ms
 *  (a burst of thousands costs one render, not thousands). Reconnects with `since`. */
function useLive(slug, collection, filter, onChange) {
  const [state, setState] = useState("connecting");
  const handler = useRef(onChange);
  handler.current = onChange;
  useEffect(() => {
    if (!collection) return undefined;
    let ws = null, closed = false, seq = null, retry = null, queue = [], flush = null;
    const push = (frame) => {
      queue.push(frame);
      if (!flush)
        flush = setTimeout(() => {
          flush = null;
          const frames = queue;
          queue = [];
          handler.current(frames);
        }, 200);
    };
    const connect = async () => {
      setState("connecting");
      try {
        ws = await tenantApi(slug).realtime();
      } catch {
        retry = setTimeout(connect, 3000);
        return;
      }
      if (closed) return ws.close();
      ws.addEventListener("message", (m) => {
        let f;
        try {
          f = JSON.parse(m.data);
        } catch {
          return;
        }
        if (f.type === "authenticated") {
          const sub = { type: "subscribe", id: "page", collection };
          if (filter) sub.filter = filter;
          if (seq !== null) sub.since = seq;
          ws.send(JSON.stringify(sub));
        } else if (f.type === "subscribed") {
          setState("live");
          if (seq === null) seq = f.seq;
        } else if (f.type === "change") {
          seq = f.seq;
          push(f);
        } else if (f.type === "resync") {
          seq = null;
          push({ op: "resync" });
        } else if (f.type === "error" && f.code === "token_expired") {
          // A read token lives minutes: connect again with a fresh one, from `seq` on.
          ws.close();
        } else if (f.type === "error") {
          setState("error");
        }
      });
      ws.addEventListener("close", () => {
        if (closed) return;
        setState("offline");
        retry = setTimeout(connect, 2000);
      });
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(retry);
      clearTimeout(flush);
      if (ws) ws.close();
    };
  }, [slug, collection, filter]);
  return state;
}

function Collections({ slug, current, list, readOnly }) {
  return html`<nav class="collections" aria-label="Collections">
    <h2>Collections</h2>
    ${list.loading && !list.data && html`<${Loading} what="collections" />`}
    <${ErrorBox} error=${list.error} what="load the collections" retry=${list.reload} />
    ${list.data && list.data.items.length === 0 &&
    html`<${Empty}>${readOnly ? "No documents yet." : "No documents yet. Name a collection below and create its first document."}</${Empty}>`}
    ${list.data && list.data.items.length > 0 &&
    html`<ul>${list.data.items.map((c) => html`<li key=${c.name}>
      <a href=${`/_/tenants/${enc(slug)}/data/${enc(c.name)}`} aria-current=${c.name === current ? "page" : undefined}>
        <span>${c.name}</span> <span class="count" aria-label=${`${c.count} documents`}>${c.count.toLocaleString()}</span></a></li>`)}</ul>`}
    <form class="open-collection" onSubmit=${(e) => {
      e.preventDefault();
      const name = new FormData(e.target).get("name").trim();
      if (name) go(`/_/tenants/${enc(slug)}/data/${enc(name)}`);
    }}>
      <label for="open-col">Open or start a collection</label>
      <div class="row"><input id="open-col" name="name" autocomplete="off" spellcheck="false" /><button type="submit">Open</button></div>
    </form>
  </nav>`;
}

/** View and edit one document (or a new one, `doc` null); `readOnly`: view only. */
function Editor({ slug, collection, doc, remote, onSaved, onDeleted, onClose, readOnly }) {
  const api = tenantApi(slug);
  const [text, setText] = useState(doc ? JSON.stringify(doc.data, null, 2) : "{\n  \n}");
  const [newId, setNewId] = useState("");
  const [conflict, setConflict] = useState(null); // the newer version
  const [confirmDelete, setConfirmDelete] = useState(false);
  const action = useAction();
  const problem = jsonProblem(text);
  const base = doc ? doc.version : undefined;

  const save = async (version = base) => {
    if (problem) return;
    const data = JSON.parse(text);
    const saved = await action.run(async () => {
      try {
        if (!doc) return newId.trim() ? api.put(collection, newId.trim(), data) : api.create(collection, data);
        return await api.put(collection, doc.id, data, version);
      } catch (e) {
        if (e.status === 412 && doc) {
          setConflict(await api.get(collection, doc.id).catch(() => ({ deleted: true })));
          return null;
        }
        throw e;
      }
    });
    if (saved) {
      setConflict(null);
      onSaved(saved, !doc);
    }
  };
  const remove = async () => {
    const r = await action.run(async () => {
      try {
        return await api.remove(collection, doc.id, doc.version);
      } catch (e) {
        if (e.status === 412) {
          setConflict(await api.get(collection, doc.id).catch(() => ({ deleted: true })));
          setConfirmDelete(false);
          return undefined;
        }
        throw e;
      }
    });
    if (r !== undefined) onDeleted(doc.id);
  };
  const title = doc ? `Document ${doc.id}` : `New document in ${collection}`;
  if (readOnly)
    return html`<section class="editor card" aria-labelledby="editor-h" data-testid="editor">
      <div class="row between"><h2 id="editor-h">${title}</h2><button type="button" onClick=${onClose} aria-label="Close the document">Close</button></div>
      ${doc && html`<p class="muted">version ${doc.version} · updated ${fmtTime(doc.updated_at)}</p>`}
      ${remote && html`<div class="state warn" role="status">${remote.op === "update" ? `Changed elsewhere: version ${remote.doc.version} is now stored.` : "Deleted elsewhere."}</div>`}
      <pre class="code" data-testid="json">${text}</pre>
    </section>`;
  return html`<section class="editor card" aria-labelledby="editor-h" data-testid="editor">
    <div class="row between"><h2 id="editor-h">${title}</h2><button type="button" onClick=${onClose} aria-label="Close the editor">Close</button></div>
    ${doc && html`<p class="muted">version ${doc.version} · updated ${fmtTime(doc.updated_at)}</p>`}
    ${remote && !conflict &&
    html`<div class="state warn" role="status">${remote.op === "update" ? `Changed elsewhere: version ${remote.doc.version} is now stored.` : "Deleted elsewhere."}
      Saving will report a conflict.</div>`}
    ${!doc && html`<${Field} label="Id (optional)" value=${newId} onInput=${setNewId} hint="Leave empty for a generated id." autocomplete="off" spellcheck="false" />`}
    <${Field} type="textarea" label="Data (JSON)" rows="14" value=${text} onInput=${setText} spellcheck="false" error=${problem} class="code" data-testid="json" />
    ${conflict &&
    html`<div class="state conflict" role="alert" data-testid="conflict">
      <strong>Conflict:</strong> ${conflict.deleted
        ? "this document was deleted since you opened it."
        : html`someone saved version ${conflict.version} since you opened version ${base}. The newer version:`}
      ${!conflict.deleted && html`<pre class="code">${JSON.stringify(conflict.data, null, 2)}</pre>`}
      <div class="row wrap">
        ${!conflict.deleted && html`<button type="button" onClick=${() => { setText(JSON.stringify(conflict.data, null, 2)); onSaved(conflict, false); setConflict(null); }}>Take the newer version</button>`}
        ${!conflict.deleted && html`<button type="button" class="danger" onClick=${() => save(conflict.version)}>Overwrite it with mine</button>`}
      </div>
    </div>`}
    <div class="row wrap">
      <button type="button" disabled=${!!problem || action.busy} onClick=${() => save()}>${doc ? "Save" : "Create"}</button>
      ${doc && (confirmDelete
        ? html`<span role="group" aria-label="Confirm deletion">Delete this document?
            <button type="button" class="danger" onClick=${remove} disabled=${action.busy}>Yes, delete</button>
            <button type="button" onClick=${() => setConfirmDelete(false)}>No</button></span>`
        : html`<button type="button" class="danger" onClick=${() => setConfirmDelete(true)}>Delete</button>`)}
    </div>
    <${ErrorBox} error=${action.error} what=${doc ? "save the document" : "create the document"} />
  </section>`;
}

function Documents({ slug, collection, onCounts, readOnly }) {
  const [filterText, setFilterText] = useState("");
  const [orderText, setOrderText] = useState("");
  const [query, setQuery] = useState({ filter: "", order: "" });
  const [cursors, setCursors] = useState([]);
  const [cursor, setCursor] = useState(null);
  const page = useLoad(
    () => tenantApi(slug).list(collection, { filter: query.filter, order: query.order, cursor, limit: PAGE }),
    [slug, collection, query, cursor],
  );
  const [rows, setRows] = useState(null);
  const [selected, setSelected] = useState(null); // a document, or "new"
  const [remote, setRemote] = useState(null); // a change to the selected document from elsewhere
  const [fresh, setFresh] = useState(0); // documents created elsewhere since this page loaded
  useEffect(() => {
    if (page.data) {
      setRows(page.data.items);
      setFresh(0);
    }
  }, [page.data]);

  const live = useLive(slug, collection, query.filter, (frames) => {
    if (frames.some((f) => f.op === "resync")) return page.reload();
    // The latest change of each document; creations are only counted.
    const latest = new Map();
    let created = 0;
    for (const f of frames) {
      if (f.op === "create") created++;
      else latest.set(f.doc.id, f);
    }
    if (created) setFresh((n) => n + created);
    if (latest.size)
      setRows((rs) =>
        rs &&
        rs.flatMap((r) => {
          const f = latest.get(r.id);
          if (!f) return [r];
          return f.op === "update" ? [{ ...f.doc, changed: true }] : [];
        }),
      );
    setSelected((s) => {
      const f = s && s !== "new" && latest.get(s.id);
      if (f && f.doc.version !== s.version) setRemote({ op: f.op, doc: f.doc });
      return s;
    });
    onCounts();
  });

  const filterError = page.error && page.error.code === "invalid_filter" ? page.error.message : null;
  const orderError = page.error && page.error.code !== "invalid_filter" && page.error.status === 400 ? page.error.message : null;
  const apply = (e) => {
    e.preventDefault();
    setCursors([]);
    setCursor(null);
    setQuery({ filter: filterText.trim(), order: orderText.trim() });
  };
  const open = (doc) => {
    setRemote(null);
    setSelected(doc);
  };
  return html`<div class="documents">
    <div class="row between wrap"><h2>${collection}</h2>
      <span class=${`live ${live}`} role="status" data-testid="live" data-state=${live}>${
        { live: "Live", connecting: "Connecting…", offline: "Offline, reconnecting…", error: "Live updates refused" }[live]}</span></div>
    <form class="query" onSubmit=${apply} role="search" aria-label="Filter documents">
      <${Field} label="Filter (CEL over doc)" value=${filterText} onInput=${setFilterText} placeholder="doc.status == 'open' && doc.n > 3"
        autocomplete="off" spellcheck="false" class="code" error=${filterError} data-testid="filter" />
      <${Field} label="Order" value=${orderText} onInput=${setOrderText} placeholder="-n,name" hint="Fields, - for descending."
        autocomplete="off" spellcheck="false" error=${orderError} />
      <div class="row"><button type="submit">Apply</button>
        ${!readOnly && html`<button type="button" onClick=${() => open("new")}>New document</button>`}</div>
    </form>
    ${fresh > 0 && html`<div class="state info" role="status">${fresh} new document${fresh > 1 ? "s" : ""} since this page loaded.
      <button type="button" onClick=${() => page.reload()}>Show</button></div>`}
    ${selected && html`<${Editor} key=${selected === "new" ? "new" : `${selected.id}:${selected.version}`} slug=${slug} collection=${collection}
      doc=${selected === "new" ? null : selected} remote=${remote} readOnly=${readOnly}
      onClose=${() => setSelected(null)}
      onSaved=${(doc, created) => {
        setRemote(null);
        setSelected(doc);
        setRows((rs) => (created ? rs : rs && rs.map((r) => (r.id === doc.id ? doc : r))));
        if (created) { page.reload(); onCounts(); }
      }}
      onDeleted=${(id) => { setSelected(null); setRows((rs) => rs && rs.filter((r) => r.id !== id)); onCounts(); }} />`}
    ${page.loading && html`<${Loading} what="documents" />`}
    ${!filterError && !orderError && html`<${ErrorBox} error=${page.error} what="load the documents" retry=${page.reload} />`}
    ${rows && rows.length === 0 && !page.loading &&
    html`<${Empty}>${query.filter ? "No document matches this filter." : readOnly ? "This collection is empty." : "This collection is empty: create its first document with “New document”."}</${Empty}>`}
    ${rows && rows.length > 0 &&
    html`<div class="scroll"><table class="docs" aria-busy=${page.loading ? "true" : "false"}>
      <caption class="sr-only">Documents of ${collection}</caption>
      <thead><tr><th scope="col">Id</th><th scope="col" class="num">Version</th><th scope="col">Updated</th><th scope="col">Data</th></tr></thead>
      <tbody>${rows.map((d) => html`<tr key=${d.id} class=${d.changed ? "changed" : ""} data-testid="doc-row">
        <th scope="row"><button type="button" class="link" onClick=${() => open(d)} aria-label=${`Open document ${d.id}`}>${d.id}</button></th>
        <td class="num">${d.version}</td><td>${fmtTime(d.updated_at)}</td><td class="code preview">${preview(d.data)}</td></tr>`)}</tbody>
    </table></div>`}
    <nav class="pager row" aria-label="Pages of documents">
      <button type="button" disabled=${cursors.length === 0 || page.loading}
        onClick=${() => { setCursor(cursors.at(-1)); setCursors(cursors.slice(0, -1)); }}>Previous page</button>
      <button type="button" disabled=${!(page.data && page.data.next_cursor) || page.loading}
        onClick=${() => { setCursors([...cursors, cursor]); setCursor(page.data.next_cursor); }}>Next page</button>
    </nav>
  </div>`;
}

export function Data({ slug, collection }) {
  const list = useLoad(() => admin.collections(slug), [slug]);
  const counts = useRef(null);
  // Counts follow live changes, at most every 2 s.
  const refreshCounts = () => {
    if (counts.current) return;
    counts.current = setTimeout(() => {
      counts.current = null;
      list.reload();
    }, 2000);
  };
  useEffect(() => () => clearTimeout(counts.current), []);
  if (list.error && list.error.status === 404)
    return html`<h1>Data</h1><${ErrorBox} error=${list.error} what="find this tenant" /><p><a href="/_/tenants">Back to the tenants</a></p>`;
  const readOnly = !session.can("write");
  return html`<h1>Data <small class="muted">of ${slug}</small></h1>
    <p class="muted small">${readOnly
      ? "Documents are read through the tenant API with a read token (rules do not apply). A viewer changes nothing."
      : "Documents are read and written through the tenant API as its service caller (rules do not apply), with a service key this tab made; it is revoked when you log out."}</p>
    <div class="data-layout">
      <${Collections} slug=${slug} current=${collection} list=${list} readOnly=${readOnly} />
      ${collection
        ? html`<${Documents} key=${collection} slug=${slug} collection=${collection} onCounts=${refreshCounts} readOnly=${readOnly} />`
        : html`<${Empty}>Pick a collection to browse its documents.</${Empty}>`}
    </div>`;
}
