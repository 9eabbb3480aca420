// The OKPay risk-operations console: an operator's token (per tab), the live
// admin stream for alerts and status changes, and the case tools of the admin API.
"use strict";

const C = { token: sessionStorage.getItem("okpay.op"), me: null, stream: null, account: null,
  reviewing: null, blobs: [] };
const $ = OK.$;

function say(id, text, kind) {
  const e = $(id);
  e.textContent = text || "";
  e.classList.toggle("error", kind === "error");
  e.classList.toggle("ok", kind === "ok");
}

async function call(method, path, body) {
  try { return await OK.api(method, path, C.token, body); }
  catch (e) { if (e.status === 401) signOut(); throw e; }
}

$("op-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  C.token = $("op-token").value.trim();
  try { await start(); $("op-token").value = ""; }
  catch (e) { say("op-msg", OK.explain(e), "error"); C.token = null; }
});

function signOut() {
  if (C.stream) C.stream.close();
  C.stream = null; C.token = null;
  sessionStorage.removeItem("okpay.op");
  $("console").classList.add("hidden"); $("signin").classList.remove("hidden");
  $("conn").classList.add("hidden"); $("who").textContent = "";
}
$("signout").addEventListener("click", signOut);

function show(tab) {
  document.querySelectorAll("[data-panel]").forEach(p => p.classList.toggle("hidden", p.dataset.panel !== tab));
  document.querySelectorAll("nav.tabs [data-tab]").forEach(b => {
    if (b.dataset.tab === tab) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  });
  if (tab === "kyc") loadQueue();
  if (tab === "audit") loadAudit();
  if (tab === "system") { loadLedger(); loadStatus(); }
}
document.querySelectorAll("nav.tabs [data-tab]").forEach(b => b.addEventListener("click", () => show(b.dataset.tab)));

// ---- alerts ---------------------------------------------------------------------

function alertItem(a) {
  const li = OK.el("li", { class: "alert", dataset: { id: a.id, account: a.account_id, rule: a.rule } },
    OK.el("span", { class: "badge " + a.severity, text: a.severity }), " ",
    OK.el("strong", { text: a.rule }), " · ", a.message, " ",
    OK.el("span", { class: "muted", text: a.account_id + " · " + OK.when(a.at) + " · " + a.action }),
    OK.el("div", { class: "row handling" },
      OK.el("button", { type: "button", class: "secondary", text: OK.t("console.open"), onclick: () => openCase(a.account_id) }),
      OK.el("button", { type: "button", class: "secondary ack", text: OK.t("console.ack"), onclick: () => handle(a.id, "acknowledge", li) }),
      OK.el("button", { type: "button", class: "secondary resolve", text: OK.t("console.resolve"), onclick: () => handle(a.id, "resolve", li) })),
    OK.el("p", { class: "muted state" }));
  return li;
}

async function handle(id, step, li) {
  let body = {};
  if (step === "resolve") {
    const note = prompt(OK.t("console.note"));
    if (!note) return;
    body = { note };
  }
  try {
    const r = await call("POST", "/v1/admin/alerts/" + encodeURIComponent(id) + "/" + step, body);
    const h = r.body, parts = [];
    if (h.acknowledged) parts.push(OK.t("console.acked", { who: h.acknowledged.operator }));
    if (h.resolved) parts.push(OK.t("console.resolved", { who: h.resolved.operator }) + ": " + (h.resolved.note || ""));
    li.querySelector(".state").textContent = parts.join(" · ");
  } catch (e) { li.querySelector(".state").textContent = OK.explain(e); }
}

async function loadAlerts() {
  const r = await call("GET", "/v1/admin/alerts?limit=100");
  $("alerts").replaceChildren(...r.body.items.map(alertItem));
  $("alerts-empty").classList.toggle("hidden", r.body.items.length > 0);
}

function onEvent(ev) {
  const d = ev.data || {};
  if (ev.type === "alert.raised") {
    if ($("alerts").querySelector('[data-id="' + CSS.escape(d.id) + '"]')) return;
    $("alerts").prepend(alertItem({ id: d.id, account_id: ev.account_id, rule: d.rule, severity: d.severity,
      message: d.message, action: d.action, at: ev.at }));
    $("alerts-empty").classList.add("hidden");
  } else if (ev.type === "account.status_changed") {
    const li = OK.el("li", { class: "status-change", dataset: { account: ev.account_id } },
      OK.t("console.status_changed", { account: ev.account_id, from: d.from, to: d.to, reason: d.reason || "" }));
    $("alerts").prepend(li);
    if (C.account === ev.account_id) openCase(ev.account_id);
  }
}

// ---- KYC --------------------------------------------------------------------------

async function loadQueue() {
  const r = await call("GET", "/v1/admin/kyc");
  $("kyc-queue").replaceChildren(...r.body.items.map(k => OK.el("li", { dataset: { account: k.account_id } },
    OK.el("strong", { text: k.full_name || "?" }), " · " + k.id_type + " " + k.id_number_masked + " · ",
    OK.el("span", { class: "muted", text: k.account_id + " · " + OK.when(k.submitted_at) }), " ",
    OK.el("button", { type: "button", class: "review", text: OK.t("console.review"), onclick: () => review(k) }))));
  $("kyc-empty").classList.toggle("hidden", r.body.items.length > 0);
}
$("kyc-refresh").addEventListener("click", loadQueue);

async function review(k) {
  C.reviewing = k.account_id;
  $("kyc-review").classList.remove("hidden");
  $("kyc-review-title").textContent = k.full_name || k.account_id;
  $("kyc-review-details").textContent = k.account_id + " · " + k.id_type + " " + k.id_number_masked;
  say("kyc-msg", "");
  for (const u of C.blobs) URL.revokeObjectURL(u);
  C.blobs = [];
  const box = $("kyc-images");
  box.replaceChildren();
  // Images need the operator's token, so they are fetched and shown as blobs;
  // each fetch is one audited view.
  for (let i = 0; i < k.documents; i++) {
    try {
      const r = await call("GET", "/v1/admin/kyc/" + k.account_id + "/documents/" + i);
      const url = URL.createObjectURL(r.body);
      C.blobs.push(url);
      box.append(OK.el("img", { src: url, alt: OK.t("console.documents") + " " + (i + 1), dataset: { index: String(i) } }));
    } catch (e) { box.append(OK.el("p", { class: "msg error", text: OK.explain(e) })); }
  }
}

async function decide(path, body, done) {
  if (!C.reviewing) return;
  try {
    await call("POST", "/v1/admin/kyc/" + C.reviewing + "/" + path, body);
    say("kyc-msg", OK.t(done), "ok");
    C.reviewing = null;
    $("kyc-reason").value = "";
    await loadQueue();
  } catch (e) { say("kyc-msg", OK.explain(e), "error"); }
}
$("kyc-approve").addEventListener("click", () => decide("approve", {}, "console.approved"));
$("kyc-reject").addEventListener("click", () => decide("reject", { reason: $("kyc-reason").value }, "console.rejected"));
$("kyc-resubmit").addEventListener("click", () => decide("request-resubmission", { reason: $("kyc-reason").value }, "console.rejected"));

// ---- accounts -----------------------------------------------------------------------

$("lookup-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  say("lookup-msg", "");
  try {
    const r = await call("GET", "/v1/admin/accounts?q=" + encodeURIComponent($("lookup-q").value.trim()));
    if (!r.body.items.length) { say("lookup-msg", OK.t("console.not_found"), "error"); $("case").classList.add("hidden"); return; }
    await openCase(r.body.items[0].account_id);
  } catch (e) { say("lookup-msg", OK.explain(e), "error"); }
});

function auditLine(e) {
  return OK.el("li", {}, OK.when(e.at) + " · " + e.operator + " (" + e.role + ") · " + e.action +
    (e.reason ? " · " + e.reason : "") + (e.detail ? " · " + e.detail : ""));
}

async function openCase(id) {
  show("lookup");
  C.account = id;
  const r = await call("GET", "/v1/admin/accounts/" + id + "/case");
  const c = r.body, a = c.account;
  const dl = $("case-profile");
  dl.replaceChildren();
  const row = (k, v, key) => { dl.append(OK.el("dt", { class: "muted", text: k }), OK.el("dd", { dataset: { field: key }, text: v || "—" })); };
  row("ID", a.account_id, "id");
  row(OK.t("auth.name"), a.display_name, "name");
  row(OK.t("auth.email"), a.email, "email");
  row(OK.t("auth.phone"), a.phone, "phone");
  row(OK.t("home.status"), OK.t("status." + a.status) + (a.status_reason ? " · " + a.status_reason : ""), "status");
  row(OK.t("kyc.status"), OK.t("kyc." + a.kyc.status) + " · tier " + a.kyc.tier, "kyc");
  row(OK.t("home.balances"), a.balances.map(b => b.available + " " + b.currency + " (+" + b.held + ")").join(", "), "balances");
  row(OK.t("home.limits"), a.limits.single_max + " / " + a.limits.daily_out_max, "limits");
  $("case-alerts").replaceChildren(...c.alerts.map(x => alertItem(Object.assign({ account_id: id }, x))));
  $("case-tx").replaceChildren(...c.transactions.map(t => OK.el("tr", {},
    OK.el("td", { text: OK.when(t.created_at) }), OK.el("td", { text: t.type + " " + t.direction }),
    OK.el("td", { text: t.amount + " " + t.currency }), OK.el("td", { text: t.status }),
    OK.el("td", { text: t.counterparty || "" }))));
  $("case-sessions").replaceChildren(...c.sessions.map(s => OK.el("li", {},
    (s.device_name || s.device_id) + (s.country ? " · " + s.country : "") + " · " + OK.when(s.created_at))));
  $("case-status").replaceChildren(...c.status_history.map(auditLine));
  $("case-kyc").textContent = OK.t("kyc." + c.kyc.status) + (c.kyc.full_name ? " · " + c.kyc.full_name : "") +
    (c.kyc.id_number_masked ? " · " + c.kyc.id_number_masked : "") + (c.kyc.reason ? " · " + c.kyc.reason : "");
  $("case-kyc-history").replaceChildren(...c.kyc_history.map(auditLine));
  $("case").classList.remove("hidden");
}

document.querySelectorAll("[data-action]").forEach(b => b.addEventListener("click", async () => {
  if (!C.account) return;
  try {
    const r = await call("POST", "/v1/admin/accounts/" + C.account + "/" + b.dataset.action,
      { reason: $("action-reason").value });
    const status = r.body.status
      || (r.body.cleared === undefined ? r.body.revoked + " sessions"
        : OK.t(r.body.cleared ? "console.totp_cleared" : "console.totp_none"));
    say("action-msg", OK.t("console.done", { status }), "ok");
    await openCase(C.account);
  } catch (e) { say("action-msg", OK.explain(e), "error"); }
}));

// ---- audit and system --------------------------------------------------------------------

async function loadAudit() {
  const r = await call("GET", "/v1/admin/audit?limit=200");
  $("audit").replaceChildren(...r.body.items.map(e => OK.el("tr", {},
    OK.el("td", { text: OK.when(e.at) }), OK.el("td", { text: e.operator + " (" + e.role + ")" }),
    OK.el("td", { text: e.action }), OK.el("td", { text: e.account_id || "" }),
    OK.el("td", { text: e.reason || "" }), OK.el("td", { text: e.detail || "" }))));
}
$("audit-refresh").addEventListener("click", loadAudit);

async function loadLedger() {
  const r = await call("GET", "/v1/admin/ledger");
  $("ledger-balanced").textContent = r.body.balanced ? OK.t("console.balanced") : OK.t("console.unbalanced");
  $("ledger-balanced").className = r.body.balanced ? "msg ok" : "msg error";
  $("ledger").replaceChildren(...Object.entries(r.body.currencies).map(([c, l]) => OK.el("tr", {},
    OK.el("th", { text: c }), OK.el("td", { text: "deposited " + l.deposited }), OK.el("td", { text: "balances " + l.balances }),
    OK.el("td", { text: "in flight " + l.in_flight }), OK.el("td", { text: "fees " + l.fees }), OK.el("td", { text: "paid out " + l.paid_out }))));
}
$("ledger-refresh").addEventListener("click", loadLedger);

async function loadStatus() {
  const r = await OK.api("GET", "/v1/system/status");
  $("maint-enabled").checked = r.body.maintenance;
  $("maint-message").value = r.body.message || "";
}
$("maint-save").addEventListener("click", async () => {
  try {
    const body = { enabled: $("maint-enabled").checked };
    if ($("maint-message").value.trim()) body.message = $("maint-message").value.trim();
    await call("PUT", "/v1/admin/maintenance", body);
    say("maint-msg", OK.t("console.done", { status: body.enabled ? "on" : "off" }), "ok");
  } catch (e) { say("maint-msg", OK.explain(e), "error"); }
});

async function start() {
  const me = await OK.api("GET", "/v1/admin/me", C.token);
  C.me = me.body;
  sessionStorage.setItem("okpay.op", C.token);
  $("who").textContent = OK.t("console.signed_in", { name: C.me.name, role: C.me.role });
  $("signin").classList.add("hidden"); $("console").classList.remove("hidden");
  $("conn").classList.remove("hidden");
  show("alerts");
  await loadAlerts();
  if (C.stream) C.stream.close();
  // The admin stream is live only: after a reconnect the list is read again.
  C.stream = new OK.Stream("/v1/admin/stream", C.token, onEvent, state => {
    OK.showConn(state);
    if (state === "live") loadAlerts().catch(() => {});
  }, false);
}

$("lang").addEventListener("click", () => OK.setLang(OK.lang === "zh" ? "en" : "zh"));
OK.onLang = () => {
  if (C.me) $("who").textContent = OK.t("console.signed_in", { name: C.me.name, role: C.me.role });
  if (C.stream) OK.showConn($("conn").dataset.state);
};
OK.translate();
if (C.token) start().catch(() => signOut());
