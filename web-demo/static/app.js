// The SMS voting demo's page: the poll and a live bar chart of its tally, sign-up/in/out,
// and the signed-in user's vote. Everything goes through the Plinth JavaScript client,
// served next to this page by `plinth serve --demo` (no build step, no dependencies).
//
// Live updates are realtime subscriptions to single documents with `snapshot: true`: the
// client reconnects on its own and resumes after the last change it delivered, so the
// chart catches up after a dropped connection or a server restart without a reload.

import { createClient, PlinthError, localStorageAdapter } from "./client/index.js";

const root = document.documentElement;
const TENANT = root.dataset.tenant || "demo";
const POLL = root.dataset.poll || "demo-poll";

/** Bar colours for options that name one; anything else gets the accent colour. */
const COLOURS = { red: "#d6336c", green: "#2b8a3e", blue: "#1c7ed6", gold: "#e8a317" };
const LIGHT = new Set(["gold"]);

const STATUS_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

const plinth = createClient({ url: location.origin, tenant: TENANT, storage: localStorageAdapter() });

const el = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const ui = {
  status: el("status"),
  question: el("question"),
  chart: el("chart"),
  total: el("total"),
  myVote: el("my-vote-line"),
  buttons: el("vote-buttons"),
  smsUrl: el("sms-url"),
  form: el("auth-form"),
  email: el("email"),
  password: el("password"),
  signedIn: el("signed-in"),
  user: el("user"),
  signout: el("signout"),
  // Errors show next to what failed: signing in, voting, or the live connection.
  errors: { auth: el("auth-error"), vote: el("vote-error"), live: el("live-error") },
};

const state = {
  poll: null, // the poll's data, or null while unknown / absent
  pollMissing: false,
  counts: {}, // option -> votes, from tallies/{POLL}
  user: null, // the signed-in user, or null
  myVote: null, // the user's option, or null
  pending: null, // the option being saved
  busy: false, // an auth request is in flight
};

// ---- rendering --------------------------------------------------------------------------

function options() {
  const list = state.poll && Array.isArray(state.poll.options) ? [...state.poll.options] : [];
  for (const o of Object.keys(state.counts)) if (!list.includes(o)) list.push(o);
  return list;
}

const label = (o) => o.charAt(0).toUpperCase() + o.slice(1);

/** The chart's row for `option`, made once and then updated in place. */
function row(option) {
  let li = ui.chart.querySelector(`li[data-option="${CSS.escape(option)}"]`);
  if (li) return li;
  li = document.createElement("li");
  li.className = "row";
  li.dataset.option = option;
  li.innerHTML = `
    <span class="label"></span>
    <span class="track" aria-hidden="true"><span class="bar"></span></span>
    <span class="figures"><span class="count"></span><span class="visually-hidden"> votes</span>
      <span class="pct"></span></span>`;
  li.querySelector(".label").textContent = label(option);
  const bar = li.querySelector(".bar");
  bar.dataset.testid = `bar-${option}`;
  bar.style.background = COLOURS[option] ?? "var(--accent)";
  li.querySelector(".count").dataset.testid = `count-${option}`;
  ui.chart.append(li);
  return li;
}

function renderChart() {
  const opts = options();
  const count = (o) => Math.max(0, Number(state.counts[o]) || 0);
  const total = opts.reduce((sum, o) => sum + count(o), 0);
  const most = opts.reduce((m, o) => Math.max(m, count(o)), 0);
  for (const li of ui.chart.querySelectorAll("li")) if (!opts.includes(li.dataset.option)) li.remove();
  for (const o of opts) {
    const n = count(o);
    const share = total ? n / total : 0;
    const li = row(o);
    ui.chart.append(li); // keeps the poll's order
    li.classList.toggle("mine", state.myVote === o);
    li.querySelector(".count").textContent = String(n);
    li.querySelector(".pct").textContent = `${Math.round(share * 100)}%`;
    const bar = li.querySelector(".bar");
    // The leader fills its track; the percentages are shares of all votes.
    bar.style.width = `${most ? ((n / most) * 100).toFixed(2) : 0}%`;
    bar.dataset.count = String(n);
  }
  ui.total.textContent = String(total);
  if (state.poll) ui.question.textContent = state.poll.question || POLL;
  else if (state.pollMissing) ui.question.textContent = `There is no poll '${POLL}' yet.`;
}

function renderVote() {
  const opts = options();
  const signedIn = !!state.user;
  for (const b of ui.buttons.querySelectorAll("button")) if (!opts.includes(b.dataset.option)) b.remove();
  for (const o of opts) {
    let b = ui.buttons.querySelector(`button[data-option="${CSS.escape(o)}"]`);
    if (!b) {
      b = document.createElement("button");
      b.type = "button";
      b.dataset.option = o;
      b.dataset.testid = `vote-${o}`;
      b.style.setProperty("--swatch", COLOURS[o] ?? "var(--accent)");
      // White on gold is too faint to read: dark text on the light swatches.
      if (LIGHT.has(o)) b.style.setProperty("--swatch-text", "#1b1f24");
      b.addEventListener("click", () => vote(o));
    }
    ui.buttons.append(b);
    b.textContent = state.pending === o ? `Voting ${label(o)}…` : label(o);
    b.setAttribute("aria-pressed", String(state.myVote === o));
    b.disabled = !signedIn || state.pending !== null || !(state.poll && state.poll.active !== false);
  }
  if (!signedIn) ui.myVote.replaceChildren(signInLink(), " to vote.");
  else if (state.poll && state.poll.active === false) ui.myVote.textContent = "This poll is closed.";
  else if (state.myVote) {
    ui.myVote.replaceChildren("You voted ", strong(label(state.myVote)), ". Tap another option to change it.");
  } else ui.myVote.textContent = "You have not voted yet: pick an option.";
  ui.myVote.dataset.vote = state.myVote ?? "";
  for (const li of ui.chart.querySelectorAll("li")) li.classList.toggle("mine", state.myVote === li.dataset.option);
}

/** "Sign in", taking the user to the email field (below the chart on small screens). */
function signInLink() {
  const a = document.createElement("a");
  a.href = "#email";
  a.textContent = "Sign in";
  a.addEventListener("click", (ev) => {
    ev.preventDefault();
    ui.email.focus();
    ui.email.scrollIntoView({ block: "center", behavior: "smooth" });
  });
  return a;
}

function strong(text) {
  const s = document.createElement("strong");
  s.dataset.testid = "my-vote";
  s.textContent = text;
  return s;
}

function renderAuth() {
  const signedIn = !!state.user;
  ui.form.hidden = signedIn;
  ui.signedIn.hidden = !signedIn;
  ui.user.textContent = state.user ? state.user.email : "";
  for (const c of ui.form.elements) c.disabled = state.busy;
  ui.signout.disabled = state.busy;
}

function render() {
  renderChart();
  renderVote();
  renderAuth();
}

function setStatus(s) {
  ui.status.dataset.state = s;
  ui.status.querySelector(".status-text").textContent = STATUS_TEXT[s] ?? s;
}

function showError(where, e, context) {
  let text;
  if (e instanceof PlinthError) {
    const fields = e.fields ? Object.entries(e.fields).map(([k, v]) => `${k} ${v}`).join("; ") : "";
    text = `${fields || e.detail || e.message} (${e.code})`;
  } else {
    text = String(e && e.message ? e.message : e);
  }
  const box = ui.errors[where];
  box.textContent = context ? `${context}: ${text}` : text;
  box.hidden = false;
}

function clearError(where) {
  ui.errors[where].hidden = true;
  ui.errors[where].textContent = "";
}

// ---- live documents ----------------------------------------------------------------------

/** Follows one document: `apply(data | null)` on the snapshot and on every change. */
function follow(collection, id, apply, what) {
  return plinth.subscribe(
    { collection, doc: id, snapshot: true },
    {
      snapshot: ({ docs }) => apply(docs[0] ? docs[0].data : null),
      change: ({ op, doc }) => apply(op === "delete" || op === "remove" ? null : doc.data),
      error: (e) => showError("live", e, `The live ${what} is unavailable`),
    },
  );
}

follow("polls", POLL, (data) => {
  state.poll = data;
  state.pollMissing = data === null;
  render();
}, "poll");

follow("tallies", POLL, (data) => {
  state.counts = data && data.counts && typeof data.counts === "object" ? data.counts : {};
  renderChart();
}, "tally");

plinth.realtime.onStateChange(setStatus);
setStatus(plinth.realtime.state);

// The user's own vote: votes/{poll}-web-{uid}, readable only by them.
const voteId = (uid) => `${POLL}-web-${uid}`;
let unfollowVote = null;

function followVote(user) {
  if (unfollowVote) unfollowVote();
  unfollowVote = null;
  state.myVote = null;
  if (user) {
    unfollowVote = follow("votes", voteId(user.id), (data) => {
      state.myVote = data ? data.option : null;
      renderVote();
    }, "vote");
  }
}

async function vote(option) {
  const user = state.user;
  if (!user || state.pending !== null) return;
  clearError("vote");
  state.pending = option;
  renderVote();
  try {
    const doc = await plinth
      .collection("votes")
      .put(voteId(user.id), { poll: POLL, option, source: "web", uid: user.id });
    if (state.user && state.user.id === user.id) state.myVote = doc.data.option;
  } catch (e) {
    showError("vote", e, "Your vote was not saved");
  } finally {
    state.pending = null;
    renderVote();
  }
}

// ---- auth ---------------------------------------------------------------------------------

plinth.auth.onAuthChange((session, event) => {
  const user = session ? session.user : null;
  const changed = (user && user.id) !== (state.user && state.user.id);
  state.user = user;
  if (changed || event === "INITIAL_SESSION") followVote(user);
  render();
});

ui.form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const action = ev.submitter && ev.submitter.value === "signup" ? "signup" : "signin";
  const email = ui.email.value.trim();
  const password = ui.password.value;
  clearError("auth");
  state.busy = true;
  renderAuth();
  try {
    if (action === "signup") await plinth.auth.signUp({ email, password });
    else await plinth.auth.signIn({ email, password });
    ui.password.value = "";
  } catch (e) {
    showError("auth", e, action === "signup" ? "Sign-up failed" : "Sign-in failed");
  } finally {
    state.busy = false;
    renderAuth();
  }
});

ui.signout.addEventListener("click", async () => {
  clearError("auth");
  clearError("vote");
  followVote(null);
  try {
    await plinth.auth.signOut();
  } catch (e) {
    // Signed out here anyway; the server will let the session expire.
    showError("auth", e, "Signed out here, but the server could not be told");
  }
});

ui.smsUrl.textContent = `${location.origin}/v1/t/${TENANT}/fn/sms`;
render();
