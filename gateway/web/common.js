// OKPay web: what the wallet and the console share — the API call with
// problem+json errors, the translations, and a websocket that reconnects
// (with a visible state) and resumes after the last event it saw.
"use strict";

const OK = {};

OK.lang = localStorage.getItem("okpay.lang") ||
  ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");

OK.t = function (key, vars) {
  const table = OK.strings[OK.lang] || OK.strings.en;
  let s = table[key] || OK.strings.en[key] || key;
  if (vars) for (const k of Object.keys(vars)) s = s.split("{" + k + "}").join(vars[k]);
  return s;
};

// Fills every [data-i18n] element (text) and [data-i18n-ph] (placeholder).
OK.translate = function (root) {
  document.documentElement.lang = OK.lang === "zh" ? "zh-CN" : "en";
  (root || document).querySelectorAll("[data-i18n]").forEach(el => {
    el.textContent = OK.t(el.dataset.i18n);
  });
  (root || document).querySelectorAll("[data-i18n-ph]").forEach(el => {
    el.placeholder = OK.t(el.dataset.i18nPh);
  });
  (root || document).querySelectorAll("[data-i18n-label]").forEach(el => {
    el.setAttribute("aria-label", OK.t(el.dataset.i18nLabel));
  });
};

OK.setLang = function (lang) {
  OK.lang = lang;
  localStorage.setItem("okpay.lang", lang);
  OK.translate();
  if (OK.onLang) OK.onLang();
};

// A problem+json answer as an Error with its fields.
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || ("HTTP " + status));
    this.status = status;
    this.code = problem.code || "";
    this.hint = problem.hint || "";
    this.retryAfter = problem.retry_after_s;
    this.problem = problem;
  }
}
OK.ApiError = ApiError;

OK.api = async function (method, path, token, body, headers) {
  const h = Object.assign({ "Accept": "application/json" }, headers || {});
  if (token) h["Authorization"] = "Bearer " + token;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return { status: 204, body: null };
  const ct = r.headers.get("Content-Type") || "";
  const data = ct.includes("json") ? await r.json() : await r.blob();
  if (!r.ok) throw new ApiError(r.status, ct.includes("json") ? data : {});
  return { status: r.status, body: data };
};

// The latest of a series of requests that each replace what is on screen (a list
// reloaded on every filter change and live update): `begin()` starts one and
// returns a check that stays true only while no later one has started. Answers
// can arrive out of order (a slow network, a busy server), so a view renders an
// answer only if its request is still the latest; otherwise an older answer
// would overwrite, or add to, what the newer one showed.
OK.Latest = class {
  constructor() { this.n = 0; }
  begin() { const n = ++this.n; return () => n === this.n; }
};

OK.idem = function () {
  return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
};

// The message shown for an error: detail, hint and the wait when there is one.
OK.explain = function (e) {
  if (!(e instanceof ApiError)) return OK.t("err.network");
  let s = e.message;
  if (e.hint) s += " " + e.hint;
  if (e.retryAfter) s += " " + OK.t("err.retry", { s: OK.duration(e.retryAfter) });
  return s;
};

OK.duration = function (seconds) {
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m > 0 ? OK.t("time.ms", { m, s }) : OK.t("time.s", { s });
};

OK.when = function (iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(OK.lang === "zh" ? "zh-CN" : "en-GB");
};

OK.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
};

OK.$ = id => document.getElementById(id);

// A websocket that reconnects with backoff and resumes after the last `seq`
// (per account: the account stream; the admin stream is live only). `onState`
// gets "connecting", "live" or "reconnecting".
OK.Stream = class {
  constructor(path, token, onEvent, onState, resumable) {
    this.path = path; this.token = token; this.onEvent = onEvent;
    this.onState = onState; this.resumable = resumable;
    this.lastSeq = null; this.delay = 500; this.closed = false; this.ws = null;
    this.connect();
  }
  connect() {
    if (this.closed) return;
    this.onState(this.everLive ? "reconnecting" : "connecting");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = proto + "//" + location.host + this.path + "?token=" + encodeURIComponent(this.token);
    if (this.resumable && this.lastSeq !== null) url += "&after_seq=" + this.lastSeq;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => { this.delay = 500; this.everLive = true; this.onState("live"); };
    ws.onmessage = m => {
      let ev; try { ev = JSON.parse(m.data); } catch (_) { return; }
      if (typeof ev.seq === "number" && this.resumable) this.lastSeq = ev.seq;
      this.onEvent(ev);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      this.onState("reconnecting");
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }
  close() { this.closed = true; if (this.ws) this.ws.close(); }
};

// The connection badge: text and state for people and for assistive technology.
OK.showConn = function (state) {
  const c = OK.$("conn");
  if (!c) return;
  c.dataset.state = state;
  c.textContent = OK.t("conn." + state);
};
