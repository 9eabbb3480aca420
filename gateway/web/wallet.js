// The OKPay wallet: one page, one session token (per tab, in sessionStorage),
// and the account's websocket keeping everything on screen current.
"use strict";

const W = { token: sessionStorage.getItem("okpay.token"), account: null, contact: null,
  stream: null, cursor: null, pending: null };
const $ = OK.$;

function deviceId() {
  let d = localStorage.getItem("okpay.device");
  if (!d) { d = "web-" + OK.idem(); localStorage.setItem("okpay.device", d); }
  return d;
}

function say(id, text, kind) {
  const e = $(id);
  e.textContent = text || "";
  e.classList.toggle("error", kind === "error");
  e.classList.toggle("ok", kind === "ok");
}

function toast(text) {
  const d = OK.el("div", { text });
  $("toasts").append(d);
  setTimeout(() => d.remove(), 6000);
}

// ---- log in / register --------------------------------------------------

$("login-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  say("auth-error", "");
  try {
    const r = await OK.api("POST", "/v1/sessions", null, {
      login: $("login-login").value.trim(), password: $("login-password").value,
      device_id: deviceId(), device_name: navigator.userAgent.includes("Mobile") ? "Phone browser" : "Web browser",
    });
    W.token = r.body.token;
    sessionStorage.setItem("okpay.token", W.token);
    $("login-password").value = "";
    await start();
  } catch (e) {
    if (e.code === "ACCOUNT_LOCKED" && e.retryAfter) {
      say("auth-error", OK.t("auth.locked", { s: OK.duration(e.retryAfter) }), "error");
      countdown(e.retryAfter);
    } else say("auth-error", OK.explain(e), "error");
  }
});

// Shows the lockout's remaining time, counting down, and keeps the button off.
function countdown(seconds) {
  const btn = $("login-submit");
  btn.disabled = true;
  const end = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((end - Date.now()) / 1000);
    if (left <= 0) { btn.disabled = false; say("auth-error", ""); return; }
    say("auth-error", OK.t("auth.locked", { s: OK.duration(left) }), "error");
    setTimeout(tick, 1000);
  };
  tick();
}

$("register-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const body = { email: $("reg-email").value.trim(), password: $("reg-password").value,
    display_name: $("reg-name").value.trim() };
  const phone = $("reg-phone").value.trim();
  if (phone) body.phone = phone;
  try {
    await OK.api("POST", "/v1/accounts", null, body);
    say("reg-msg", OK.t("auth.registered"), "ok");
    $("login-login").value = body.email;
    $("reg-password").value = "";
    $("login-password").focus();
  } catch (e) { say("reg-msg", OK.explain(e), "error"); }
});

$("logout").addEventListener("click", async () => {
  try { await OK.api("DELETE", "/v1/sessions/current", W.token); } catch (_) { /* gone anyway */ }
  signedOut();
});

function signedOut() {
  if (W.stream) W.stream.close();
  W.stream = null; W.token = null;
  sessionStorage.removeItem("okpay.token");
  $("app").classList.add("hidden"); $("auth").classList.remove("hidden");
  $("conn").classList.add("hidden");
}

// Every authenticated call: a 401 means the session ended (revoked, expired).
async function call(method, path, body, headers) {
  try { return await OK.api(method, path, W.token, body, headers); }
  catch (e) { if (e.status === 401) signedOut(); throw e; }
}

// ---- tabs -----------------------------------------------------------------

function show(tab) {
  document.querySelectorAll("[data-panel]").forEach(p => p.classList.toggle("hidden", p.dataset.panel !== tab));
  document.querySelectorAll("nav.tabs [data-tab]").forEach(b => {
    if (b.dataset.tab === tab) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  });
  if (tab === "history") loadHistory(true);
  if (tab === "security") loadSessions();
  if (tab === "send") loadContacts();
}
document.querySelectorAll("nav.tabs [data-tab]").forEach(b => b.addEventListener("click", () => show(b.dataset.tab)));

// ---- account ----------------------------------------------------------------

async function loadAccount() {
  const r = await call("GET", "/v1/account");
  W.account = r.body;
  renderAccount();
}

function renderAccount() {
  const a = W.account;
  if (!a) return;
  const ul = $("balances");
  ul.replaceChildren();
  if (!a.balances.length) ul.append(OK.el("li", { class: "muted", text: OK.t("home.no_money") }));
  for (const b of a.balances) {
    ul.append(OK.el("li", { dataset: { currency: b.currency } },
      OK.el("span", { class: "balance", id: "bal-" + b.currency, text: b.available }), " ",
      OK.el("span", { text: b.currency }), " ",
      OK.el("span", { class: "muted", text: OK.t("home.available") + " · " + OK.t("home.held") + " " + b.held })));
  }
  const st = $("acct-status");
  st.textContent = OK.t("status." + a.status);
  st.className = "status-" + a.status;
  st.dataset.status = a.status;
  $("acct-reason").textContent = a.status_reason || "";
  $("kyc-tier").textContent = String(a.kyc.tier);
  $("limit-single").textContent = a.limits.single_max;
  $("limit-daily").textContent = a.limits.daily_out_max;
  $("limit-used").textContent = a.limits.daily_out_used;
  $("limit-challenge").textContent = a.limits.challenge_over;
  const k = $("kyc-status");
  k.textContent = OK.t("kyc." + a.kyc.status);
  k.dataset.status = a.kyc.status;
  $("kyc-reason").textContent = a.kyc.reason ? OK.t("kyc.reason") + ": " + a.kyc.reason : "";
  $("kyc-form").classList.toggle("hidden", a.kyc.status === "pending" || a.kyc.status === "approved");
  $("totp-state").textContent = a.totp_enabled ? OK.t("sec.totp_on") : "";
  $("totp-start").classList.toggle("hidden", a.totp_enabled);
  const currencies = a.balances.length ? a.balances.map(b => b.currency) : ["CNY"];
  document.querySelectorAll("select.currency").forEach(sel => {
    const keep = sel.value;
    sel.replaceChildren(...currencies.map(c => OK.el("option", { value: c, text: c })));
    if (currencies.includes(keep)) sel.value = keep;
  });
}

// ---- contacts and sending -------------------------------------------------

async function loadContacts() {
  const r = await call("GET", "/v1/contacts");
  const box = $("contacts");
  box.replaceChildren();
  if (!r.body.items.length) box.append(OK.el("p", { class: "muted", text: OK.t("send.none") }));
  for (const c of r.body.items) {
    box.append(OK.el("button", { type: "button", class: "contact", "aria-pressed": String(W.contact === c.id),
      dataset: { id: c.id, alias: c.alias }, text: c.alias, onclick: () => pick(c) }));
  }
}

function pick(c) {
  W.contact = c.id; W.contactAlias = c.alias;
  document.querySelectorAll("#contacts button").forEach(b => b.setAttribute("aria-pressed", String(b.dataset.id === c.id)));
  $("send-submit").disabled = false;
  $("send-amount").focus();
}

$("contact-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  try {
    const r = await call("POST", "/v1/contacts", { alias: $("contact-alias").value.trim(),
      login_or_account: $("contact-login").value.trim() });
    $("contact-alias").value = ""; $("contact-login").value = "";
    say("contact-msg", "");
    await loadContacts();
    pick(r.body);
  } catch (e) { say("contact-msg", OK.explain(e), "error"); }
});

$("send-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  if (!W.contact) return;
  say("send-msg", "");
  const body = { to: "contact:" + W.contact, amount: $("send-amount").value.trim(),
    currency: $("send-currency").value };
  const memo = $("send-memo").value.trim();
  if (memo) body.memo = memo;
  const alias = W.contactAlias;
  await moneyCall("/v1/transfers", body, "send-msg", t => {
    $("send-amount").value = ""; $("send-memo").value = "";
    say("send-msg", OK.t("send.done", { amount: t.amount, currency: t.currency, to: alias }), "ok");
  });
});

// Posts a money-moving request with an idempotency key; a 202 with a challenge
// opens the code prompt, and the confirmed answer goes to `done`.
async function moneyCall(path, body, msgId, done) {
  try {
    const r = await call("POST", path, body, { "Idempotency-Key": OK.idem() });
    if (r.body && r.body.status === "challenge_required") {
      stepUp(r.body.challenge, msgId, done);
      return;
    }
    done(r.body);
  } catch (e) { say(msgId, OK.explain(e), "error"); }
}

function stepUp(challenge, msgId, done) {
  W.pending = { challenge, msgId, done };
  $("stepup-text").textContent = OK.t(challenge.method === "totp" ? "stepup.totp" : "stepup.sms");
  $("stepup-code").value = "";
  say("stepup-msg", "");
  $("stepup").showModal();
  $("stepup-code").focus();
}

$("stepup-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const p = W.pending;
  if (!p) return;
  try {
    const r = await call("POST", "/v1/challenges/" + encodeURIComponent(p.challenge.id) + "/confirm",
      { code: $("stepup-code").value.trim() });
    $("stepup").close();
    W.pending = null;
    p.done(r.body);
  } catch (e) { say("stepup-msg", OK.explain(e), "error"); }
});
$("stepup-cancel").addEventListener("click", () => { $("stepup").close(); W.pending = null; });

// ---- deposit and withdraw: review (fee, arrival) before confirming -------------

// Asks GET /v1/quotes when the server has it; otherwise the receipt tells the fee.
async function quote(kind, amount, currency, method) {
  try {
    const q = new URLSearchParams({ operation: kind, amount, currency, method });
    const r = await call("GET", "/v1/quotes?" + q.toString());
    return r.body;
  } catch (_) { return null; }
}

function quoteText(q, kind) {
  if (!q) return OK.t("money.fee_after");
  const parts = [];
  if (q.fee !== undefined) parts.push(OK.t("money.fee") + ": " + q.fee + " " + (q.currency || ""));
  const net = q.net;
  if (net !== undefined) parts.push(OK.t(kind === "deposit" ? "money.net" : "money.payout") + ": " + net);
  const by = q.expected_at;
  parts.push(OK.t("money.arrival") + ": " + (by ? (String(by).includes("T") ? OK.when(by) : by) : OK.t("money.instant")));
  return parts.join(" · ");
}

$("dep-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  say("dep-msg", "");
  const q = await quote("deposit", $("dep-amount").value.trim(), $("dep-currency").value, $("dep-method").value);
  $("dep-quote-text").textContent = quoteText(q, "deposit");
  $("dep-quote").classList.remove("hidden");
  $("dep-confirm").focus();
});
$("dep-cancel").addEventListener("click", () => $("dep-quote").classList.add("hidden"));
$("dep-confirm").addEventListener("click", async () => {
  $("dep-quote").classList.add("hidden");
  await moneyCall("/v1/deposits", { amount: $("dep-amount").value.trim(), currency: $("dep-currency").value,
    method: $("dep-method").value, card_number: $("dep-card").value.trim() }, "dep-msg", d => {
    say("dep-msg", OK.t("money.deposited", { net: d.net, currency: d.currency, fee: d.fee }), "ok");
    $("dep-amount").value = "";
  });
});

$("wd-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  say("wd-msg", "");
  const q = await quote("withdrawal", $("wd-amount").value.trim(), $("wd-currency").value, $("wd-method").value);
  $("wd-quote-text").textContent = quoteText(q, "withdrawal");
  $("wd-quote").classList.remove("hidden");
  $("wd-confirm").focus();
});
$("wd-cancel").addEventListener("click", () => $("wd-quote").classList.add("hidden"));
$("wd-confirm").addEventListener("click", async () => {
  $("wd-quote").classList.add("hidden");
  await moneyCall("/v1/withdrawals", { amount: $("wd-amount").value.trim(), currency: $("wd-currency").value,
    method: $("wd-method").value, destination: $("wd-destination").value.trim() }, "wd-msg", w => {
    say("wd-msg", OK.t("money.withdrawn", { amount: w.amount, currency: w.currency, payout: w.payout,
      to: w.destination_masked, by: OK.when(w.expected_by), fee: w.fee }), "ok");
    $("wd-amount").value = "";
  });
});

// ---- history ----------------------------------------------------------------

// Each load supersedes those still in flight (see `OK.Latest`): opening the tab,
// changing the filter and a live update each start one, and only the answer to
// the latest is shown. Without this, the answer to the tab's unfiltered request
// arriving after the filter's would add every transaction under the filter.
const historyLoads = new OK.Latest();
// The server reads a bounded amount per request, so a page may come back short,
// even empty, with a `next_cursor` (an account quiet for a year has its rows
// further back). While nothing is on screen yet the page follows the cursor by
// itself, a few times at most (each request reads about a year of weeks).
const HISTORY_FOLLOW_MAX = 8;
async function loadHistory(fresh, followed = 0) {
  const current = historyLoads.begin();
  if (fresh) {
    W.cursor = null;
    $("history").replaceChildren();
    $("history-more").classList.add("hidden");
  }
  const q = new URLSearchParams({ limit: "20" });
  if ($("hist-type").value) q.set("type", $("hist-type").value);
  if (W.cursor) q.set("cursor", W.cursor);
  const r = await call("GET", "/v1/transactions?" + q.toString());
  if (!current()) return;
  for (const t of r.body.items) {
    const sign = t.direction === "in" ? "+" : "−";
    $("history").append(OK.el("tr", { dataset: { id: t.id, direction: t.direction } },
      OK.el("td", { text: OK.when(t.created_at) }),
      OK.el("td", { text: OK.t("history." + t.type) + (t.memo ? " · " + t.memo : "") }),
      OK.el("td", { class: t.direction === "in" ? "amount-in" : "", text: sign + t.amount + " " + t.currency }),
      OK.el("td", { text: t.status })));
  }
  W.cursor = r.body.next_cursor;
  if (W.cursor && $("history").children.length === 0 && followed < HISTORY_FOLLOW_MAX) {
    return loadHistory(false, followed + 1);
  }
  $("history-more").classList.toggle("hidden", !W.cursor);
  $("history-empty").classList.toggle("hidden", $("history").children.length > 0);
}
$("hist-type").addEventListener("change", () => loadHistory(true));
$("history-more").addEventListener("click", () => loadHistory(false));

// ---- KYC ----------------------------------------------------------------------

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",")[1]);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

$("kyc-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  try {
    const body = { full_name: $("kyc-name").value.trim(), id_type: $("kyc-idtype").value,
      id_number: $("kyc-idnumber").value.trim(), document_front: await base64Of($("kyc-front").files[0]) };
    if ($("kyc-back").files[0]) body.document_back = await base64Of($("kyc-back").files[0]);
    await call("POST", "/v1/kyc", body);
    say("kyc-msg", OK.t("kyc.submitted"), "ok");
    await loadAccount();
  } catch (e) { say("kyc-msg", OK.explain(e), "error"); }
});

// ---- sessions and TOTP ------------------------------------------------------------

async function loadSessions() {
  const r = await call("GET", "/v1/sessions");
  $("sessions").replaceChildren(...r.body.items.map(s => OK.el("li", { dataset: { id: s.session_id } },
    (s.device_name || s.device_id) + (s.country ? " · " + s.country : "") + " · " + OK.when(s.created_at),
    s.current ? OK.el("span", { class: "badge", text: " " + OK.t("sec.current") }) : null)));
}
$("logout-others").addEventListener("click", async () => {
  try { await call("DELETE", "/v1/sessions"); say("sessions-msg", OK.t("sec.others_out"), "ok"); await loadSessions(); }
  catch (e) { say("sessions-msg", OK.explain(e), "error"); }
});

// A TOTP change takes the password and the code sent to the phone or email, so a
// stolen session can't give itself a second factor.
$("totp-start").addEventListener("click", () => {
  $("totp-auth").classList.remove("hidden");
  $("totp-password").focus();
});
$("totp-send").addEventListener("click", async () => {
  try {
    await call("POST", "/v1/account/totp/code", { password: $("totp-password").value });
    say("totp-msg", OK.t("sec.totp_sent"), "ok");
    $("totp-proof").focus();
  } catch (e) { say("totp-msg", OK.explain(e), "error"); }
});
$("totp-begin").addEventListener("click", async () => {
  try {
    const r = await call("POST", "/v1/account/totp",
      { password: $("totp-password").value, code: $("totp-proof").value.trim() });
    $("totp-password").value = "";
    $("totp-auth").classList.add("hidden");
    $("totp-secret").textContent = r.body.secret;
    const svg = await fetch("/web/qr", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: r.body.otpauth_uri }) });
    if (svg.ok) {
      // The SVG is drawn by the server from the URI alone: no script, only paths.
      $("totp-qr").innerHTML = await svg.text();
    }
    $("totp-setup").classList.remove("hidden");
    $("totp-code").focus();
  } catch (e) { say("totp-msg", OK.explain(e), "error"); }
});
$("totp-confirm").addEventListener("click", async () => {
  try {
    const r = await call("POST", "/v1/account/totp/confirm", { code: $("totp-code").value.trim() });
    $("totp-setup").classList.add("hidden");
    $("totp-recovery").textContent = r.body.recovery_codes.join("\n");
    $("totp-recovery").classList.remove("hidden");
    say("totp-msg", OK.t("sec.totp_done") + " " + OK.t("sec.totp_recovery"), "ok");
    await loadAccount();
  } catch (e) { say("totp-msg", OK.explain(e), "error"); }
});

// ---- live updates -----------------------------------------------------------------

function onEvent(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case "balance.updated": {
      if (!W.account) break;
      const b = W.account.balances.find(x => x.currency === d.currency);
      if (b) { b.available = d.available; b.held = d.held; }
      else W.account.balances.push({ currency: d.currency, available: d.available, held: d.held, total: d.available });
      renderAccount();
      loadAccount().catch(() => {});
      break;
    }
    case "transaction.updated":
      if (d.direction === "in" && d.type === "transfer" && d.status === "completed")
        toast(OK.t("live.received", { amount: d.amount, currency: d.currency }));
      if (!$("tab-home").closest("[data-panel]").classList.contains("hidden")) loadAccount().catch(() => {});
      if (!document.querySelector('[data-panel="history"]').classList.contains("hidden")) loadHistory(true).catch(() => {});
      break;
    case "kyc.updated":
      toast(OK.t("live.kyc", { status: OK.t("kyc." + d.status) }));
      loadAccount().catch(() => {});
      break;
    case "account.status_changed":
      toast(OK.t("live.status", { status: OK.t("status." + d.to) }) + (d.reason ? " " + d.reason : ""));
      loadAccount().catch(() => {});
      break;
    case "alert.raised":
      toast(OK.t("live.alert", { message: d.message }));
      break;
    case "session.created":
      if (d.new_device) toast(OK.t("live.session", { device: d.device_id }));
      break;
    case "system.status":
      maintenance(d);
      break;
    default:
      break;
  }
}

function maintenance(s) {
  $("maint").classList.toggle("hidden", !s.maintenance);
  $("maint").textContent = s.maintenance ? OK.t("live.maintenance", { message: s.message || "" }) : "";
}

async function start() {
  try { await loadAccount(); } catch (e) { signedOut(); return; }
  $("auth").classList.add("hidden"); $("app").classList.remove("hidden");
  $("conn").classList.remove("hidden");
  show("home");
  if (W.stream) W.stream.close();
  // A reconnect resumes after the last event seen; the page then re-reads the
  // account, in case more happened than the server retained.
  W.stream = new OK.Stream("/v1/stream", W.token, onEvent, state => {
    OK.showConn(state);
    if (state === "live") loadAccount().catch(() => {});
  }, true);
  OK.api("GET", "/v1/system/status").then(r => maintenance(r.body)).catch(() => {});
}

$("lang").addEventListener("click", () => OK.setLang(OK.lang === "zh" ? "en" : "zh"));
OK.onLang = () => { renderAccount(); if (W.stream) OK.showConn($("conn").dataset.state); };
OK.translate();
if (W.token) start();
