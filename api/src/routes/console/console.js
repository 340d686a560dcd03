// Leadflow's operator console: a page over /admin/api/*. The token lives in this tab's
// sessionStorage only and goes out as a bearer token; every value is put in the page
// as text, never as HTML.
(function () {
  "use strict";
  const $ = (s) => document.querySelector(s);
  const KEY = "leadflow-operator-token";
  let token = sessionStorage.getItem(KEY);
  let timer = null;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function button(td, label, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = cls;
    b.addEventListener("click", onClick);
    td.appendChild(b);
    return b;
  }
  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }
  function flash(text) {
    $("#flash").textContent = text;
  }

  async function api(method, path) {
    const r = await fetch("/admin/api" + path, { method, headers: { Authorization: "Bearer " + token } });
    if (r.status === 401) {
      signOut("That token is not valid.");
      throw new Error("unauthorized");
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
    return body;
  }

  function filterQuery() {
    const p = new URLSearchParams();
    if ($("#kind").value) p.set("kind", $("#kind").value);
    if ($("#q").value.trim()) p.set("q", $("#q").value.trim());
    const s = p.toString();
    return s ? "?" + s : "";
  }

  async function loadQueues() {
    const { data } = await api("GET", "/queues");
    const body = $("#queues tbody");
    body.replaceChildren();
    for (const q of data) {
      const tr = document.createElement("tr");
      tr.dataset.queue = q.queue;
      cell(tr, q.queue + (q.paused ? " (paused)" : ""), q.paused ? "paused" : "");
      cell(tr, q.waiting);
      cell(tr, q.active);
      cell(tr, q.delayed);
      cell(tr, q.failed);
      cell(tr, q.oldest_waiting_seconds == null ? "–" : q.oldest_waiting_seconds.toFixed(1) + " s");
      cell(tr, q.workers);
      const td = cell(tr, "");
      button(td, q.paused ? "Resume" : "Pause", q.paused ? "resume" : "pause", async () => {
        await api("POST", "/queues/" + q.queue + (q.paused ? "/resume" : "/pause"));
        flash((q.paused ? "Resumed " : "Paused ") + q.queue + ".");
        refresh();
      });
      body.appendChild(tr);
    }
  }

  async function loadFailures() {
    const { data } = await api("GET", "/failures" + filterQuery());
    const body = $("#failures tbody");
    body.replaceChildren();
    $("#no-failures").hidden = data.length > 0;
    for (const f of data) {
      const tr = document.createElement("tr");
      tr.dataset.kind = f.kind;
      tr.dataset.id = f.id;
      cell(tr, when(f.at));
      cell(tr, f.kind);
      cell(tr, f.tenant_id.slice(0, 8));
      cell(tr, f.lead_id || "");
      cell(tr, [f.error_code, f.message].filter(Boolean).join(": "), "error");
      cell(tr, f.attempts);
      const td = cell(tr, "");
      button(td, "Retry", "retry primary", async () => {
        await api("POST", "/failures/" + f.kind + "/" + f.id + "/retry");
        flash("Retried the " + f.kind + (f.lead_id ? " for " + f.lead_id : "") + ".");
        refresh();
      });
      button(td, "Discard", "discard", async () => {
        await api("POST", "/failures/" + f.kind + "/" + f.id + "/discard");
        flash("Discarded the " + f.kind + ".");
        refresh();
      });
      body.appendChild(tr);
    }
  }

  async function loadChannels() {
    const { data } = await api("GET", "/channels?connection=disconnected");
    const body = $("#channels tbody");
    body.replaceChildren();
    for (const c of data) {
      const tr = document.createElement("tr");
      cell(tr, c.name);
      cell(tr, c.provider);
      cell(tr, c.tenant_id.slice(0, 8));
      cell(tr, when(c.connection_changed_at));
      cell(tr, c.connection_error || "", "error");
      body.appendChild(tr);
    }
  }

  async function loadTenants() {
    const { data } = await api("GET", "/tenants");
    const body = $("#tenants tbody");
    body.replaceChildren();
    for (const t of data) {
      const tr = document.createElement("tr");
      tr.dataset.tenant = t.id;
      cell(tr, t.name + (t.disabled ? " (disabled)" : ""));
      cell(tr, t.kind);
      cell(tr, t.leads);
      cell(tr, t.channels);
      cell(tr, t.messages_24h);
      cell(tr, t.failures_24h);
      const td = cell(tr, "");
      button(td, t.disabled ? "Enable" : "Disable", t.disabled ? "enable" : "disable", async () => {
        await api("POST", "/tenants/" + t.id + (t.disabled ? "/enable" : "/disable"));
        flash((t.disabled ? "Enabled " : "Disabled ") + t.name + ".");
        refresh();
      });
      body.appendChild(tr);
    }
  }

  async function refresh() {
    try {
      await Promise.all([loadQueues(), loadFailures(), loadChannels(), loadTenants()]);
      document.body.dataset.loaded = String(Date.now());
    } catch (e) {
      if (e.message !== "unauthorized") flash("Could not load: " + e.message);
    }
  }

  function show() {
    const signedIn = Boolean(token);
    $("#sign-in").hidden = signedIn;
    $("#console").hidden = !signedIn;
    $("#sign-out").hidden = !signedIn;
    clearInterval(timer);
    if (signedIn) {
      refresh();
      timer = setInterval(refresh, 5000);
    }
  }
  function signOut(why) {
    token = null;
    sessionStorage.removeItem(KEY);
    $("#token").value = "";
    $("#sign-in-error").textContent = why || "";
    show();
  }

  $("#sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("#token").value.trim();
    sessionStorage.setItem(KEY, token);
    $("#sign-in-error").textContent = "";
    show();
  });
  $("#sign-out").addEventListener("click", () => signOut(""));
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("#retry-all").addEventListener("click", async () => {
    const r = await api("POST", "/failures/retry" + filterQuery());
    flash("Retried " + r.retried + " of " + r.selected + ".");
    refresh();
  });
  show();
})();
