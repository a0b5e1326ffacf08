
"use strict";
// memsync operator console. Talks only to the memsync HTTP API (docs/api.md) with the function
// key taken from this page's own ?code=. Every value from the API reaches the DOM through textContent
// or setAttribute (see el()/svg() below), never as markup.
(() => {
  const STALE_AFTER_MS = 12 * 3600 * 1000; // two periods of the default 6-hour sync schedule
  const FAST_POLL_MS = 3000;               // while a tenant is pending, syncing or a sync was just queued
  const SLOW_POLL_MS = 60000;
  const QUEUED_FOR_MS = 120000;            // how long a "Sync now" shows as queued without news from the API
  const KEY_MESSAGE = "This link's function key is missing or wrong: open the console with ?code=<function key>";
  const KEY = new URLSearchParams(location.search).get("code") || "";
  const API = location.pathname.replace(/\/console\/?$/, "/"); // the console lives beside the API routes

  class KeyProblem extends Error {}
  class ApiProblem extends Error {
    constructor(status, problem) {
      const p = problem && typeof problem === "object" ? problem : {};
      const text = [p.title, p.detail].filter(Boolean).join(": ");
      super(text || (status === 404 ? "not available on this API yet (HTTP 404)" : `HTTP ${status}`));
      this.status = status;
      this.problem = p;
    }
  }

  // ------------------------------------------------------------------ DOM helpers (no markup from data)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", String(v));
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  const enc = encodeURIComponent;

  // Re-rendering replaces nodes; keep keyboard focus on "the same" control across a refresh.
  function keepFocus(render) {
    const id = document.activeElement && document.activeElement.getAttribute("data-focus-id");
    render();
    if (id && !document.activeElement.closest("[data-focus-id]")) {
      const again = document.querySelector(`[data-focus-id="${CSS.escape(id)}"]`);
      if (again) again.focus();
    }
  }

  // ------------------------------------------------------------------ formatting
  const nf = new Intl.NumberFormat();
  const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const df = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const num = (n) => (typeof n === "number" && isFinite(n) ? nf.format(n) : "—");
  // Graph writes 0001-01-01T00:00:00Z for a date it does not have (an Autopilot identity never contacted).
  function when(iso) {
    const t = Date.parse(iso || "");
    return isNaN(t) || t <= 0 ? null : t;
  }
  function ago(iso) {
    const t = when(iso);
    if (t === null) return null;
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400 * 2) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }
  function timeEl(iso, fallback) {
    const text = ago(iso);
    if (!text) return el("span", { class: "muted", text: fallback || "never" });
    return el("time", { datetime: iso, title: dtf.format(new Date(iso)), text });
  }
  function daysLeft(iso) {
    const t = Date.parse(iso || "");
    return isNaN(t) ? null : Math.floor((t - Date.now()) / 86400000);
  }
  function daysText(d) {
    if (d === null) return "no expiry date known";
    if (d < 0) return `expired ${-d} day${d === -1 ? "" : "s"} ago`;
    if (d === 0) return "expires today";
    return `${d} day${d === 1 ? "" : "s"} left`;
  }
  const pct = (part, whole) => (whole > 0 ? Math.round((100 * part) / whole) : null);
  const label = (s) => String(s || "").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/^./, (c) => c.toUpperCase());
  const isCount = (n) => typeof n === "number" && isFinite(n);

  // ------------------------------------------------------------------ optional entities (docs/api.md, Tenant status)
  // counts.<entity> and counts.facts.<entity> are there only when the tenant's last sync collected the entity,
  // and rows written before the API gave facts have none: the page then shows a dash, never a zero it does not know.
  const countOf = (t, entity) => (t.counts && isCount(t.counts[entity]) ? t.counts[entity] : null);
  function factOf(t, entity, name) {
    const f = t.counts && t.counts.facts && t.counts.facts[entity];
    return f && isCount(f[name]) ? f[name] : null;
  }
  function notCollected(t, entity) {
    const e = t.error;
    const why = e && e.code === "permissionMissing" && String(e.message || "").startsWith(entity)
      ? "Not collected: the consent lacks its permission (see the note)" : "Not collected by the last sync";
    return el("span", { class: "muted", "data-fact": "none", title: why, text: "—" });
  }
  const SEVERITIES = ["critical", "high", "medium", "low"];
  // A badge says its severity in words; the colour only repeats it.
  function sevBadge(severity, n) {
    return el("span", { class: `sev sev-${isCount(n) && n > 0 ? severity : "none"}`, "data-severity": severity,
      "data-count": isCount(n) ? n : null, text: `${num(n)} ${severity}` });
  }
  function sevChip(severity) {
    const s = String(severity || "").toLowerCase();
    return el("span", { class: `sev sev-${SEVERITIES.includes(s) ? s : "none"}`, text: severity || "unknown" });
  }
  const TRUST_TYPES = { AzureAd: "Entra joined", ServerAd: "Hybrid joined", Workplace: "Registered" };

  // ------------------------------------------------------------------ OS end of support (docs/api.md, Device, osSupport)
  // Each device carries its release's verdict on the day of its last sync; a tenant counts the ended and
  // ending-soon ones in counts.facts.devices. A device written before memsync judged OS support has none.
  const OS_SUPPORT = [["ended", "Support ended", "#c2253b"], ["endingSoon", "Ends within 180 days", "#d9822b"],
    ["supported", "Supported", "#2f7d4f"], ["unknown", "No published end date", "#7b8591"]];
  const NOT_JUDGED = "Not judged yet";
  const dayf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" }); // endsOn is a date
  function endsOnText(s) {
    const t = Date.parse((s && s.endsOn) || "");
    return isNaN(t) ? null : dayf.format(new Date(t));
  }
  // A chip for a device whose OS support ended or ends within 180 days; nothing otherwise.
  function osChip(d) {
    const s = d.osSupport;
    if (!s || (s.status !== "ended" && s.status !== "endingSoon")) return null;
    const ended = s.status === "ended";
    return el("span", { class: `chip ${ended ? "chip-error" : "chip-warn"}`, "data-os-support": s.status,
      title: `${s.release || "This release"}: Microsoft ${ended ? "ended" : "ends"} its support on ${endsOnText(s) || "an unknown date"}`,
      text: ended ? "support ended" : `support ends ${endsOnText(s) || "soon"}` });
  }
  // The source page as a link only when it is Microsoft's (an https URL on microsoft.com); text otherwise.
  function sourceLink(url) {
    const u = String(url || "");
    if (!/^https:\/\/([a-z0-9-]+\.)*microsoft\.com\//i.test(u)) return u ? el("span", { class: "muted", text: u }) : null;
    return el("a", { href: u, target: "_blank", rel: "noopener noreferrer", text: "Microsoft lifecycle page" });
  }
  function osSupportDetail(d) {
    const s = d.osSupport;
    if (!s) return el("span", { class: "muted", text: "not judged yet (synced before memsync read OS support)" });
    if (s.status === "unknown") return el("span", { class: "muted", text: "no published end date for this release" });
    const when = endsOnText(s) || "an unknown date";
    const said = s.status === "ended" ? `ended ${when}` : s.status === "endingSoon" ? `ends ${when} (within 180 days)` : `until ${when}`;
    return [osChip(d) || el("span", { class: "chip chip-ok", text: "supported" }), " ", `${s.release || ""} ${said}`.trim(),
      s.source ? [el("br"), sourceLink(s.source)] : null];
  }
  // Per customer: its devices past and near the end of support, from the last sync's facts.
  function osFact(t) {
    const ended = factOf(t, "devices", "osEnded"), soon = factOf(t, "devices", "osEndingSoon");
    if (ended === null && soon === null) {
      return el("span", { class: "muted", "data-fact": "none", title: "Not judged by the last sync (none yet, or an older memsync)", text: "—" });
    }
    const badge = (status, n, word) => el("span", { class: `sev ${isCount(n) && n > 0 ? (status === "ended" ? "sev-critical" : "sev-high") : "sev-none"}`,
      "data-os-support": status, "data-count": isCount(n) ? n : null, text: `${num(n)} ${word}` });
    return el("span", { class: "sevs", title: `${num(ended)} devices past their OS release's end of support, ${num(soon)} within 180 days of it` },
      badge("ended", ended, "ended"), badge("endingSoon", soon, "ending soon"));
  }
  const MATCHED_BY = { managedDeviceId: "Intune device id", serialNumber: "serial number" };
  const yesNo = (b) => (b === true ? "yes" : b === false ? "no" : "—");

  // ------------------------------------------------------------------ API
  function apiPath(pathOrLink) {
    // A nextLink may name this API under another host name: keep its path and query only, so every
    // call stays same-origin (connect-src 'self') and carries the key in the header, not the URL.
    const u = new URL(pathOrLink, location.origin + API);
    u.searchParams.delete("code");
    return u.pathname + u.search;
  }
  async function api(pathOrLink, options) {
    return (await call(pathOrLink, options)).data;
  }
  // The whole answer: its data and the ETag header (GET /api/integrations/{id}), for If-Match.
  async function call(pathOrLink, { method = "GET", body, headers: extra } = {}) {
    const headers = { accept: "application/json", ...(extra || {}) };
    if (KEY) headers["x-functions-key"] = KEY;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(apiPath(pathOrLink), {
        method, headers, cache: "no-store", credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiProblem(0, { title: "Cannot reach the memsync API", detail: String(err.message || err) });
    }
    if (res.status === 401 || res.status === 403) throw new KeyProblem(KEY_MESSAGE);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!res.ok) throw new ApiProblem(res.status, data);
    return { status: res.status, data, etag: res.headers.get("etag") };
  }
  async function listAll(path) {
    const out = [];
    let link = path;
    for (let guard = 0; link && guard < 1000; guard++) {
      const page = await api(link);
      out.push(...((page && page.value) || []));
      link = page && page.nextLink;
    }
    return out;
  }
  const soft = (promise) => promise.catch((err) => { if (err instanceof KeyProblem) throw err; return { failed: err }; });

  // ------------------------------------------------------------------ state
  const state = {
    integrations: [],
    tenants: new Map(),   // integrationId -> tenants[] | {failed}
    alerts: [],
    alertsFailed: null,
    queued: new Map(),    // "integrationId/tenantId" -> {since: lastSyncStartedAt at click, at: ms}
    fleet: new Map(),     // "integrationId/tenantId@lastSuccessAt" -> devices[]
    fleetScope: "all",
    browseKey: "",
    keyProblem: false,
    loadedOnce: false,
  };
  const tkey = (integrationId, tenantId) => `${integrationId}/${tenantId}`;
  function allTenants() {
    const rows = [];
    for (const integ of state.integrations) {
      const list = state.tenants.get(integ.id);
      if (Array.isArray(list)) for (const t of list) rows.push({ integ, t, key: tkey(integ.id, t.tenantId) });
    }
    return rows;
  }
  function findTenant(key) { return allTenants().find((r) => r.key === key) || null; }
  function shownStatus(row) {
    const q = state.queued.get(row.key);
    const s = row.t.status || "pending";
    if (q) {
      const moved = (row.t.lastSyncStartedAt || null) !== q.since;
      if (moved || s === "syncing" || Date.now() - q.at > QUEUED_FOR_MS) state.queued.delete(row.key);
      else return "queued";
    }
    return s;
  }
  function isStale(row) {
    const s = row.t.status;
    if (s === "excluded" || s === "error") return false;
    const last = Date.parse(row.t.lastSuccessAt || "");
    if (!isNaN(last)) return Date.now() - last > STALE_AFTER_MS;
    const since = Date.parse(row.integ.createdAt || "");
    return !isNaN(since) && Date.now() - since > STALE_AFTER_MS;
  }
  const tenantName = (t) => t.displayName || t.defaultDomainName || t.tenantId;

  // ------------------------------------------------------------------ banner and announcements
  function showBanner(title, detail) {
    const b = $("#banner");
    b.replaceChildren(el("span", { text: title }), detail ? el("p", { text: detail }) : null);
    b.hidden = false;
  }
  function hideBanner() { $("#banner").hidden = true; }
  function announce(text) {
    const a = $("#announce");
    a.textContent = "";
    setTimeout(() => { a.textContent = text; }, 50);
  }
  function showKeyProblem() {
    state.keyProblem = true;
    showBanner(KEY_MESSAGE, "The console reads the function key from its own address and sends it with every call "
      + "to the memsync API. Ask whoever runs memsync for the link, or copy the key from the Azure portal "
      + "(Function App > App keys).");
    $("#main").hidden = true;
    $("#updated").textContent = "Not signed in";
  }

  // ------------------------------------------------------------------ loading
  let pollTimer = null;
  let loading = false;
  async function refresh() {
    if (loading) return;
    loading = true;
    clearTimeout(pollTimer);
    try {
      const integrations = await listAll("integrations?top=1000");
      const [tenantLists, alerts] = await Promise.all([
        Promise.all(integrations.map((i) => soft(listAll(`integrations/${enc(i.id)}/tenants?top=1000`)))),
        soft(listAll("alerts?status=open&top=1000")),
      ]);
      state.integrations = integrations;
      state.tenants = new Map(integrations.map((i, n) => [i.id, tenantLists[n]]));
      state.alertsFailed = alerts.failed || null;
      state.alerts = Array.isArray(alerts) ? alerts.filter((a) => (a.status || "open") === "open") : [];
      state.loadedOnce = true;
      hideBanner();
      $("#main").hidden = false;
      $("#updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      keepFocus(renderAll);
      loadFleet().catch(onError);
      if (!state.browseKey) pickBrowseDefault();
    } catch (err) {
      onError(err);
    } finally {
      loading = false;
      schedulePoll();
    }
  }
  function onError(err) {
    if (err instanceof KeyProblem) { showKeyProblem(); return; }
    showBanner(state.loadedOnce ? "The last refresh failed; showing what was loaded before." : "The console could not load.",
      `${err.message || err}. It tries again by itself.`);
  }
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (state.keyProblem) return;
    const busy = state.queued.size > 0 || allTenants().some((r) => r.t.status === "pending" || r.t.status === "syncing");
    pollTimer = setTimeout(refresh, busy ? FAST_POLL_MS : SLOW_POLL_MS);
  }

  // ------------------------------------------------------------------ rendering
  function renderAll() {
    renderTiles();
    renderAttention();
    renderCustomers();
    renderScopeOptions();
    renderManage();
  }

  function renderTiles() {
    const rows = allTenants();
    const counted = rows.filter((r) => r.t.status !== "excluded");
    const devices = counted.reduce((n, r) => n + ((r.t.counts && r.t.counts.devices) || 0), 0);
    const withDefender = counted.filter((r) => r.integ.includeDefender !== false && r.t.counts && typeof r.t.counts.defenderMachines === "number");
    const dDevices = withDefender.reduce((n, r) => n + (r.t.counts.devices || 0), 0);
    const dMachines = withDefender.reduce((n, r) => n + Math.min(r.t.counts.defenderMachines || 0, r.t.counts.devices || 0), 0);
    const by = (s) => rows.filter((r) => r.t.status === s).length;
    // Secrets near expiry count once: through their open alert if the expiry timer raised one already.
    const alerted = new Set(state.alerts.map((a) => `${a.integrationId}/${a.appId}`));
    const expiring = state.integrations.flatMap((i) => (i.secrets || [])
      .filter((s) => { const d = daysLeft(s.expiresOn); return d !== null && d <= 30 && !alerted.has(`${i.id}/${s.appId}`); }));
    const attention = by("error") + rows.filter(isStale).length + state.alerts.length + expiring.length;
    const tile = (value, text, bad, id) => el("li", { class: bad ? "tile bad" : "tile", "data-tile": id || null },
      el("span", { class: "value", text: value }), el("span", { class: "label", text }));
    // Sums over the customers whose last sync collected the entity; a dash when none did.
    const sumOf = (entity, name) => counted.reduce((n, r) => {
      const v = factOf(r.t, entity, name);
      return v === null ? n : (n || 0) + v;
    }, null);
    const critical = sumOf("vulnerabilities", "critical");
    const osEnded = sumOf("devices", "osEnded");
    const licensed = counted.filter((r) => factOf(r.t, "licences", "enabled") !== null && factOf(r.t, "licences", "consumed") !== null);
    const overLicensed = licensed.filter((r) => overUsed(r.t) > 0).length;
    const tiles = $("#tiles");
    tiles.replaceChildren(
      tile(num(rows.length), `customers in ${state.integrations.length} integration${state.integrations.length === 1 ? "" : "s"}`),
      tile(num(by("ok")), "synced ok"),
      tile(num(by("syncing") + by("pending")), "syncing or waiting"),
      tile(num(attention), "need attention", attention > 0),
      tile(num(devices), "devices"),
      tile(dDevices ? `${pct(dMachines, dDevices)}%` : "—", "Defender coverage"),
      tile(num(sumOf("entraDevices", "unmanaged")), "Entra ID devices not managed by Intune", false, "entra-unmanaged"),
      tile(num(sumOf("autopilotDevices", "unenrolled")), "Autopilot identities not enrolled", false, "autopilot-unenrolled"),
      tile(num(critical), "critical vulnerabilities", critical > 0, "critical"),
      tile(licensed.length ? num(overLicensed) : "—", "customers over their licences", overLicensed > 0, "over-licensed"),
      tile(num(osEnded), "devices past their OS end of support", osEnded > 0, "os-ended"),
    );
    tiles.removeAttribute("aria-busy");
  }

  function renderAttention() {
    const names = new Map(state.integrations.map((i) => [i.id, i.displayName || i.id]));
    const items = [];
    for (const a of state.alerts) {
      items.push(el("li", { "data-kind": "alert" },
        el("div", { class: "issue-head" },
          el("span", { class: `chip ${a.kind === "secretExpiring" ? "chip-warn" : "chip-error"}`, text: label(a.kind || "alert") }),
          el("span", { class: "issue-title", text: a.message || label(a.kind) }),
          el("span", { class: "muted", text: names.get(a.integrationId) || "" })),
        a.action ? el("p", { class: "action", text: a.action }) : null));
    }
    if (state.alertsFailed) {
      items.push(el("li", { class: "muted", text: `Alerts could not be loaded: ${state.alertsFailed.message}` }));
    }
    for (const integ of state.integrations) {
      if (integ.error) {
        items.push(el("li", { "data-kind": "integration-error" },
          el("div", { class: "issue-head" },
            el("span", { class: "chip chip-error", text: "integration" }),
            el("span", { class: "issue-title", text: integ.displayName || integ.id }),
            el("code", { text: integ.error.code || "" })),
          el("span", { text: integ.error.message || "" }),
          integ.error.action ? el("p", { class: "action", text: integ.error.action }) : null));
      }
      const list = state.tenants.get(integ.id);
      if (list && list.failed) {
        items.push(el("li", { class: "muted", text: `${integ.displayName}: customers could not be loaded: ${list.failed.message}` }));
      }
    }
    for (const row of allTenants()) {
      if (row.t.status === "error") {
        const e = row.t.error || {};
        items.push(el("li", { "data-kind": "tenant-error", "data-tenant": row.t.tenantId },
          el("div", { class: "issue-head" },
            el("span", { class: "chip chip-error", text: "error" }),
            el("span", { class: "issue-title", text: tenantName(row.t) }),
            e.code ? el("code", { text: e.code }) : null),
          e.message ? el("span", { text: e.message }) : null,
          e.action ? el("p", { class: "action", text: e.action }) : null));
      } else if (isStale(row)) {
        items.push(el("li", { "data-kind": "stale", "data-tenant": row.t.tenantId },
          el("div", { class: "issue-head" },
            el("span", { class: "chip chip-warn", text: "not synced" }),
            el("span", { class: "issue-title", text: tenantName(row.t) }),
            el("span", { class: "muted" }, "last success ", timeEl(row.t.lastSuccessAt))),
          el("p", { class: "action", text: "No successful sync for over 12 hours (two schedule periods). Press Sync now; if it fails, its error says what to fix." })));
      }
    }
    $("#issues").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "Nothing needs attention." })]));

    const secrets = [];
    for (const integ of state.integrations) {
      for (const s of integ.secrets || []) secrets.push({ integ, s, days: daysLeft(s.expiresOn) });
    }
    secrets.sort((a, b) => (a.days === null) - (b.days === null) || (a.days ?? 0) - (b.days ?? 0));
    $("#secrets").replaceChildren(...(secrets.length ? secrets.map(({ integ, s, days }) => {
      const tone = days === null ? "chip-excluded" : days < 0 ? "chip-error" : days <= 30 ? "chip-warn" : "chip-ok";
      return el("li", { "data-kind": "secret" },
        el("div", { class: "secret-row" },
          el("span", {}, el("strong", { text: secretRole(s.name), title: s.name || null }), " · ", el("span", { class: "muted", text: integ.displayName || integ.id })),
          el("span", { class: `chip ${tone}`, text: daysText(days) })),
        el("div", { class: "muted" },
          s.expiresOn ? `Expires ${df.format(new Date(s.expiresOn))}` : "Expiry not known",
          s.appId ? " · app " : "", s.appId ? el("code", { text: s.appId }) : null,
          s.expiresOnSource ? ` · ${EXPIRY_SOURCES[s.expiresOnSource] || `date from ${s.expiresOnSource}`}` : ""));
    }) : [el("li", { class: "muted", text: "No secrets registered." })]));
  }

  const EXPIRY_SOURCES = { given: "date given at registration", graph: "date read from Entra ID", entra: "date read from Entra ID" };
  function secretRole(name) {
    // Secret names are Key Vault names (memsync-<integration>-<role>); say which app's secret it is.
    const n = String(name || "");
    if (/partner/i.test(n)) return "Partner Center app secret";
    if (/sync/i.test(n)) return "Sync app secret";
    return n ? label(n) : "Secret";
  }

  function chipFor(status) {
    const cls = { ok: "chip-ok", error: "chip-error", syncing: "chip-syncing", queued: "chip-queued", pending: "chip-pending", excluded: "chip-excluded" }[status] || "chip-excluded";
    return el("span", { class: `chip ${cls}`, "data-status": status, text: status });
  }

  const CUSTOMER_COLUMNS = 9;
  function renderCustomers() {
    const table = $("#customers-table");
    table.classList.add("cards");
    const bodies = [];
    if (!state.integrations.length) {
      bodies.push(el("tbody", {}, el("tr", {}, el("td", { colspan: CUSTOMER_COLUMNS, class: "muted nolabel" },
        "No integrations yet. Register one under Register an integration below; its customers appear here."))));
    }
    for (const integ of state.integrations) {
      const list = state.tenants.get(integ.id);
      const tenants = Array.isArray(list) ? [...list].sort((a, b) => tenantName(a).localeCompare(tenantName(b))) : [];
      const syncAll = el("button", {
        type: "button", class: "btn btn-quiet btn-small", "data-focus-id": `sync-all:${integ.id}`,
        "data-action": "sync-integration", disabled: integ.status === "disabled",
        onclick: (ev) => syncNow(ev.currentTarget, integ, null),
      }, "Sync all", el("span", { class: "visually-hidden", text: ` customers of ${integ.displayName || integ.id}` }));
      const head = el("tr", { class: "group" }, el("th", { colspan: CUSTOMER_COLUMNS, scope: "colgroup" },
        el("div", { class: "group-inner" },
          el("span", { class: "name", text: integ.displayName || integ.id }),
          el("span", { class: "muted", text: integ.kind === "singleTenant" ? "single tenant" : "partner (multi-tenant)" }),
          el("span", { class: `chip chip-${integ.status === "error" ? "error" : integ.status === "disabled" ? "disabled" : "active"}`, text: integ.status || "active" }),
          el("span", { class: "muted", text: `${tenants.length} customer${tenants.length === 1 ? "" : "s"}` }),
          syncAll)));
      const rows = tenants.map((t) => customerRow(integ, t));
      if (list && list.failed) rows.push(el("tr", {}, el("td", { colspan: CUSTOMER_COLUMNS, class: "muted nolabel", text: `Customers could not be loaded: ${list.failed.message}` })));
      bodies.push(el("tbody", { "data-integration": integ.id }, head, rows));
    }
    table.querySelectorAll("tbody").forEach((b) => b.remove());
    table.append(...bodies);
  }

  function customerRow(integ, t) {
    const row = { integ, t, key: tkey(integ.id, t.tenantId) };
    const status = shownStatus(row);
    const counts = t.counts || {};
    const e = t.error;
    let defender;
    if (integ.includeDefender === false) defender = el("span", { class: "muted", text: "not included" });
    else if (e && e.code === "defenderUnavailable") defender = el("span", { class: "muted", text: "not available" });
    else if (typeof counts.defenderMachines !== "number" || !counts.devices) defender = el("span", { class: "muted", text: "—" });
    else {
      const p = Math.min(100, pct(counts.defenderMachines, counts.devices));
      const fill = el("span", { class: "meter-fill" });
      fill.style.width = `${p}%`;
      defender = el("span", { class: "meter", title: `${counts.defenderMachines} Defender machines for ${counts.devices} Intune devices` },
        el("span", { class: "meter-track", "aria-hidden": "true" }, fill),
        el("span", { text: `${p}% (${num(counts.defenderMachines)} / ${num(counts.devices)})` }));
    }
    const problem = e ? el("div", {},
      el("span", { class: "msg" }, e.code ? el("code", { text: e.code }) : null, e.message ? ` ${e.message}` : ""),
      e.action ? el("p", { class: "action", text: e.action }) : null) : el("span", { class: "muted", text: "—" });
    const stale = isStale(row);
    return el("tr", { "data-tenant": t.tenantId, "data-integration": integ.id },
      el("td", { "data-label": "Customer" }, el("span", {},
        el("span", { class: "cust-name", text: tenantName(t) }),
        el("span", { class: "cust-domain", text: t.defaultDomainName || t.tenantId }))),
      el("td", { "data-label": "Status", class: "status" }, el("span", {}, chipFor(status),
        // A missing optional permission is a note: everything else synced.
        e && status === "ok" ? " " : null,
        e && status === "ok" ? (e.code === "permissionMissing" ? el("span", { class: "chip chip-note", text: "note" })
          : el("span", { class: "chip chip-warn", text: "warning" })) : null)),
      el("td", { "data-label": "Last success" }, el("span", { class: stale ? "stale" : "" },
        timeEl(t.lastSuccessAt), stale ? " (stale)" : "")),
      el("td", { "data-label": "Devices", class: "num devices", text: num(counts.devices) }),
      el("td", { "data-label": "Software", class: "num software", text: num(counts.software) }),
      el("td", { "data-label": "Defender", class: "defender" }, defender),
      el("td", { "data-label": "Entra ID, Autopilot, vulnerabilities, licences, OS support", class: "facts-cell" }, factsCell(row)),
      el("td", { "data-label": "Problem", class: "problem" }, problem),
      el("td", { "data-label": "Actions" }, el("div", { class: "row-actions" },
        el("button", {
          type: "button", class: "btn btn-small", "data-action": "sync-tenant", "data-focus-id": `sync:${row.key}`,
          disabled: t.status === "excluded" || status === "queued" || t.status === "syncing" || integ.status === "disabled",
          title: t.status === "excluded" ? "Excluded by the integration's tenant filter" : null,
          onclick: (ev) => syncNow(ev.currentTarget, integ, t),
        }, "Sync now", el("span", { class: "visually-hidden", text: ` ${tenantName(t)}` })),
        el("button", {
          type: "button", class: "btn btn-quiet btn-small", "data-action": "show-fleet", "data-focus-id": `fleet:${row.key}`,
          disabled: t.status === "excluded",
          onclick: () => showTenant(row.key),
        }, "Details", el("span", { class: "visually-hidden", text: ` for ${tenantName(t)}` })))));
  }

  // The number opens the list it counts, in "Entra ID, Autopilot and licences" below.
  function listButton(row, view, text, hidden, cls) {
    return el("button", {
      type: "button", class: `btn-link ${cls || ""}`, "data-action": "open-list", "data-view": view,
      "data-focus-id": `list:${view}:${row.key}`, onclick: () => openList(row.key, view),
    }, text, el("span", { class: "visually-hidden", text: hidden }));
  }
  // The optional entities of one customer, a line each: a dash when the last sync did not collect the
  // entity; a dash and the total for an old row that has the entity's count but no facts.
  function factsCell(row) {
    const line = (entity, term, value) => [el("dt", { text: term }), el("dd", { "data-entity": entity }, value)];
    return el("dl", { class: "facts" },
      line("entraDevices", "Entra ID", partOf(row, "entraDevices", "unmanaged", "managed=false", "unmanaged",
        { part: "Entra ID devices Intune does not manage", all: "Entra ID devices" })),
      line("autopilotDevices", "Autopilot", partOf(row, "autopilotDevices", "unenrolled", "enrolled=false", "not enrolled",
        { part: "Autopilot identities not enrolled", all: "Autopilot identities" })),
      line("vulnerabilities", "Vulnerabilities", vulnFact(row.t)),
      line("licences", "Licences", licenceFact(row)),
      line("devices", "OS support", osFact(row.t)));
  }
  const dash = () => el("span", { "data-fact": "none", text: "—" });
  // Entra ID devices Intune does not manage, Autopilot identities not enrolled: the number opens that list.
  function partOf(row, entity, fact, filter, word, noun) {
    const t = row.t, total = countOf(t, entity), part = factOf(t, entity, fact);
    if (total === null && part === null) return notCollected(t, entity);
    const who = tenantName(t);
    if (part === null) return [dash(), " ", listButton(row, entity, `of ${num(total)}`, ` ${noun.all} of ${who}: show them`)];
    return [listButton(row, `${entity}?${filter}`, `${num(part)} ${word}`, ` ${noun.part} of ${who}: show them`, part > 0 ? "attention" : ""),
      total === null ? null : el("span", { class: "muted", text: ` of ${num(total)}` })];
  }
  function vulnFact(t) {
    const f = t.counts && t.counts.facts && t.counts.facts.vulnerabilities;
    const total = countOf(t, "vulnerabilities");
    if (!f) return total === null ? notCollected(t, "vulnerabilities") : [dash(), el("span", { class: "muted", text: ` ${num(total)} in all` })];
    return el("span", { class: "sevs", title: `${num(f.medium)} medium, ${num(f.low)} low${total === null ? "" : `, ${num(total)} in all`}` },
      sevBadge("critical", f.critical), sevBadge("high", f.high));
  }
  function licenceFact(row) {
    const t = row.t, skus = countOf(t, "licences");
    const consumed = factOf(t, "licences", "consumed"), enabled = factOf(t, "licences", "enabled");
    if (consumed === null || enabled === null) {
      return skus === null ? notCollected(t, "licences")
        : [dash(), " ", listButton(row, "licences", `${num(skus)} subscriptions`, ` of ${tenantName(t)}: show the licences`)];
    }
    const subscriptions = factOf(t, "licences", "overConsumed");
    const over = overUsed(t);
    // Per subscription when the sync counted it (free seats of one never hide another's over-use);
    // rows from before that compare the tenant's sums.
    const said = subscriptions === null ? `over by ${num(over)}`
      : `${num(over)} subscription${over === 1 ? "" : "s"} over-used`;
    return [listButton(row, "licences", `${num(consumed)} / ${num(enabled)} used`, ` licences of ${tenantName(t)} (used / enabled): show them`, over > 0 ? "over" : ""),
      over > 0 ? [" ", el("span", { class: "chip chip-error", "data-over": over, text: said })] : null];
  }
  function overUsed(t) {
    const subscriptions = factOf(t, "licences", "overConsumed");
    if (subscriptions !== null) return subscriptions;
    const consumed = factOf(t, "licences", "consumed"), enabled = factOf(t, "licences", "enabled");
    return consumed === null || enabled === null ? 0 : Math.max(0, consumed - enabled);
  }

  async function syncNow(button, integ, tenant) {
    button.disabled = true;
    const targets = allTenants().filter((r) => r.integ.id === integ.id && r.t.status !== "excluded"
      && (!tenant || r.t.tenantId === tenant.tenantId));
    try {
      await api(`integrations/${enc(integ.id)}/sync`, { method: "POST", body: tenant ? { tenantIds: [tenant.tenantId] } : undefined });
      for (const r of targets) state.queued.set(r.key, { since: r.t.lastSyncStartedAt || null, at: Date.now() });
      announce(tenant ? `Sync queued for ${tenantName(tenant)}.` : `Sync queued for every customer of ${integ.displayName || integ.id}.`);
      keepFocus(renderAll);
      schedulePoll();
    } catch (err) {
      if (err instanceof KeyProblem) { showKeyProblem(); return; }
      button.disabled = false;
      showBanner(`Sync could not be queued for ${tenant ? tenantName(tenant) : integ.displayName || integ.id}.`, err.message);
    }
  }

  function selectBrowse(key) {
    state.browseKey = key;
    $("#browse-tenant").value = key;
    closeDevice(false);
    for (const l of listers) l.reset();
  }
  function showTenant(key) {
    state.fleetScope = key;
    $("#fleet-scope").value = key;
    loadFleet().catch(onError);
    selectBrowse(key);
    $("#fleet").scrollIntoView({ behavior: "smooth", block: "start" });
    $("#fleet-h").setAttribute("tabindex", "-1");
    $("#fleet-h").focus({ preventScroll: true });
  }
  function openList(key, view) {
    more.form.elements.view.value = view;
    selectBrowse(key);
    $("#more").scrollIntoView({ behavior: "smooth", block: "start" });
    $("#more-h").focus({ preventScroll: true });
  }

  let scopeSig = null;
  function renderScopeOptions() {
    const rows = allTenants().filter((r) => r.t.status !== "excluded");
    const sorted = [...rows].sort((a, b) => tenantName(a.t).localeCompare(tenantName(b.t)));
    const many = state.integrations.length > 1;
    const opt = (r) => el("option", { value: r.key, text: many ? `${tenantName(r.t)} — ${r.integ.displayName}` : tenantName(r.t) });
    const sig = sorted.map((r) => `${r.key}=${tenantName(r.t)}`).join("|");
    if (sig === scopeSig) return;
    scopeSig = sig;
    const scope = $("#fleet-scope");
    scope.replaceChildren(el("option", { value: "all", text: "All customers" }), ...sorted.map(opt));
    if (![...scope.options].some((o) => o.value === state.fleetScope)) state.fleetScope = "all";
    scope.value = state.fleetScope;
    const browse = $("#browse-tenant");
    browse.replaceChildren(...(sorted.length ? sorted.map(opt) : [el("option", { value: "", text: "No customers yet" })]));
    if (state.browseKey && [...browse.options].some((o) => o.value === state.browseKey)) browse.value = state.browseKey;
  }

  // ------------------------------------------------------------------ fleet charts
  const WINDOWS_RELEASES = {
    "10.0.17763": "Windows 10 1809", "10.0.19041": "Windows 10 2004", "10.0.19042": "Windows 10 20H2",
    "10.0.19043": "Windows 10 21H1", "10.0.19044": "Windows 10 21H2", "10.0.19045": "Windows 10 22H2",
    "10.0.22000": "Windows 11 21H2", "10.0.22621": "Windows 11 22H2", "10.0.22631": "Windows 11 23H2",
    "10.0.26100": "Windows 11 24H2", "10.0.26200": "Windows 11 25H2", "10.0.28000": "Windows 11 26H1",
  };
  function osRelease(d) {
    // The release memsync matched for OS support tells Windows Server 2025 from Windows 11 24H2 (build 26100).
    if (d.osSupport && d.osSupport.release) return d.osSupport.release;
    const os = d.operatingSystem || "Unknown OS";
    const v = String(d.osVersion || "");
    if (/^windows/i.test(os)) {
      const build = v.split(".").slice(0, 3).join(".");
      return WINDOWS_RELEASES[build] || (build ? `Windows ${build}` : "Windows");
    }
    const major = v.split(".")[0];
    return major ? `${os} ${major}` : os;
  }
  const COMPLIANCE = [["compliant", "Compliant", "#2f7d4f"], ["noncompliant", "Not compliant", "#c2253b"],
    ["inGracePeriod", "In grace period", "#c27c0e"], ["conflict", "Conflict", "#8b4fc4"], ["error", "Error", "#8f1d2c"],
    ["configManager", "Config Manager", "#3f6fb5"], ["unknown", "Unknown", "#7b8591"]];
  const RISK = [["High", "#c2253b"], ["Medium", "#d9822b"], ["Low", "#d6b62e"], ["Informational", "#3f6fb5"], ["None", "#2f7d4f"]];
  const EXPOSURE = [["High", "#c2253b"], ["Medium", "#d9822b"], ["Low", "#d6b62e"], ["None", "#2f7d4f"]];
  const OS_COLORS = { windows: "#2d6fc4", macos: "#5b6370", ios: "#7a4fc0", ipados: "#7a4fc0", android: "#2f8a4f" };
  const NOT_IN_DEFENDER = "Not in Defender";

  function fleetTargets() {
    const rows = allTenants().filter((r) => r.t.status !== "excluded");
    return state.fleetScope === "all" ? rows.filter((r) => r.t.lastSuccessAt || (r.t.counts && r.t.counts.devices))
      : rows.filter((r) => r.key === state.fleetScope);
  }
  let fleetToken = 0;
  async function loadFleet() {
    const token = ++fleetToken;
    const targets = fleetTargets();
    const charts = $("#charts");
    const pendingLoads = targets.filter((r) => !state.fleet.has(`${r.key}@${r.t.lastSuccessAt}`));
    if (pendingLoads.length) {
      charts.setAttribute("aria-busy", "true");
      $("#fleet-caption").textContent = `Loading devices of ${pendingLoads.length} customer${pendingLoads.length === 1 ? "" : "s"}…`;
    }
    const failures = [];
    await Promise.all(pendingLoads.map(async (r) => {
      try {
        const devices = await listAll(`integrations/${enc(r.integ.id)}/tenants/${enc(r.t.tenantId)}/devices?top=1000`);
        for (const k of state.fleet.keys()) if (k.startsWith(`${r.key}@`)) state.fleet.delete(k);
        state.fleet.set(`${r.key}@${r.t.lastSuccessAt}`, devices);
      } catch (err) {
        if (err instanceof KeyProblem) throw err;
        failures.push(`${tenantName(r.t)}: ${err.message}`);
      }
    }));
    if (token !== fleetToken) return; // a newer scope was chosen meanwhile
    const devices = [];
    let customers = 0;
    for (const r of targets) {
      const list = state.fleet.get(`${r.key}@${r.t.lastSuccessAt}`);
      if (list) { customers++; devices.push(...list.filter((d) => !d.removedAt)); }
    }
    charts.removeAttribute("aria-busy");
    // Polling calls this every few seconds: redraw only when the data changed (hover tips stay put).
    const sig = `${state.fleetScope}|${targets.map((r) => `${r.key}@${r.t.lastSuccessAt}`).join(",")}|${failures.length}`;
    if (sig === fleetSig) return;
    fleetSig = sig;
    lastFleet = devices;
    const scopeName = state.fleetScope === "all" ? `${customers} customer${customers === 1 ? "" : "s"}` : tenantName(targets[0] ? targets[0].t : {});
    $("#fleet-caption").textContent = `${num(devices.length)} devices from ${scopeName}.`
      + (failures.length ? ` Could not load: ${failures.join("; ")}.` : "");
    renderCharts(devices);
  }
  let lastFleet = [];
  let fleetSig = "";

  function countBy(items, keyOf) {
    const m = new Map();
    for (const it of items) { const k = keyOf(it); m.set(k, (m.get(k) || 0) + 1); }
    return m;
  }
  function renderCharts(devices) {
    const charts = $("#charts");
    const total = devices.length;
    // Operating system and release, grouped by OS family (biggest family first).
    const families = countBy(devices, (d) => d.operatingSystem || "Unknown OS");
    const releases = countBy(devices, osRelease);
    const versionsOf = new Map();
    for (const d of devices) {
      const r = osRelease(d);
      if (!versionsOf.has(r)) versionsOf.set(r, new Map());
      const m = versionsOf.get(r); const v = d.osVersion || "unknown";
      m.set(v, (m.get(v) || 0) + 1);
    }
    const familyOf = new Map(devices.map((d) => [osRelease(d), d.operatingSystem || "Unknown OS"]));
    const osRows = [...releases.entries()].map(([name, value]) => {
      const fam = familyOf.get(name);
      const detail = [...versionsOf.get(name).entries()].sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v}: ${n}`).join(", ");
      return { label: name, value, color: OS_COLORS[String(fam).toLowerCase()] || "#5b6370", group: fam, famTotal: families.get(fam), detail };
    }).sort((a, b) => b.famTotal - a.famTotal || a.group.localeCompare(b.group) || b.value - a.value);

    const compliance = countBy(devices, (d) => d.complianceState || "unknown");
    const compRows = COMPLIANCE.map(([k, name, color]) => ({ label: name, key: k, value: compliance.get(k) || 0, color }));
    for (const [k, v] of compliance) if (!COMPLIANCE.some(([c]) => c === k)) compRows.push({ label: label(k), key: k, value: v, color: "#7b8591" });

    const risk = countBy(devices, (d) => (d.defender ? d.defender.riskScore || "None" : NOT_IN_DEFENDER));
    const riskRows = RISK.map(([k, color]) => ({ label: k, value: risk.get(k) || 0, color }));
    const exposure = countBy(devices, (d) => (d.defender ? d.defender.exposureLevel || "None" : NOT_IN_DEFENDER));
    const expRows = EXPOSURE.map(([k, color]) => ({ label: k, value: exposure.get(k) || 0, color }));
    const notIn = risk.get(NOT_IN_DEFENDER) || 0;
    riskRows.push({ label: NOT_IN_DEFENDER, value: notIn, color: "#a7b0ba" });
    expRows.push({ label: NOT_IN_DEFENDER, value: exposure.get(NOT_IN_DEFENDER) || 0, color: "#a7b0ba" });

    // OS support by status; the tip names the releases behind each bar.
    const supportOf = (d) => (d.osSupport ? d.osSupport.status || "unknown" : NOT_JUDGED);
    const support = countBy(devices, supportOf);
    const releasesBy = (status) => [...countBy(devices.filter((d) => supportOf(d) === status), osRelease).entries()]
      .sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r}: ${n}`).join(", ");
    const supportRows = OS_SUPPORT.map(([k, name, color]) => ({ label: name, key: k, value: support.get(k) || 0, color, detail: releasesBy(k) }));
    if (support.get(NOT_JUDGED)) supportRows.push({ label: NOT_JUDGED, key: "notJudged", value: support.get(NOT_JUDGED), color: "#a7b0ba", detail: releasesBy(NOT_JUDGED) });

    const now = Date.now();
    const years = devices.map((d) => { const t = Date.parse(d.enrolledDateTime || ""); return isNaN(t) ? null : Math.max(0, Math.floor((now - t) / (365.25 * 86400000))); });
    const maxYear = Math.min(5, Math.max(0, ...years.filter((y) => y !== null)));
    const ageRows = [];
    for (let y = 0; y <= maxYear; y++) {
      const value = years.filter((v) => v !== null && (y === 5 ? v >= 5 : v === y)).length;
      ageRows.push({ label: y === 5 ? "5+ yrs" : `${y}–${y + 1} yrs`, longLabel: y === 5 ? "5 years or more" : `${y} to ${y + 1} years`, value, color: "#2d6fc4" });
    }
    const unknownAge = years.filter((y) => y === null).length;
    if (unknownAge) ageRows.push({ label: "unknown", longLabel: "enrolment date unknown", value: unknownAge, color: "#a7b0ba" });

    charts.replaceChildren(
      chartFigure("os", "Operating system and release", "Release", total, osRows, barChart),
      chartFigure("os-support", "OS end of support", "Support", total, supportRows, barChart),
      chartFigure("compliance", "Compliance state", "State", total, compRows, barChart),
      chartFigure("risk", "Defender risk score", "Risk", total, riskRows, barChart),
      chartFigure("exposure", "Defender exposure level", "Exposure", total, expRows, barChart),
      chartFigure("age", "Device age since enrolment", "Age", total, ageRows, columnChart),
    );
    for (const slot of charts.querySelectorAll(".chart-drawing")) slot.drawChart();
  }

  function chartFigure(id, title, keyHeader, total, rows, draw) {
    const fig = el("figure", { class: "chart", "data-chart": id });
    const capId = `chart-${id}-caption`;
    fig.append(el("figcaption", { id: capId }, el("span", { text: title }), el("span", { class: "muted", text: `${num(total)} devices` })));
    if (!total) { fig.append(el("p", { class: "empty", text: "No devices synced yet." })); return fig; }
    // Drawn once the figure is in the page, at its real width, so the text is never scaled down.
    const slot = el("div", { class: "chart-drawing" });
    slot.drawChart = () => slot.replaceChildren(draw(rows, total, Math.max(240, slot.clientWidth || 360)));
    fig.append(slot);
    // The same numbers for screen readers (the drawing itself is aria-hidden).
    fig.append(el("table", { class: "visually-hidden", "data-chart-table": id },
      el("caption", { text: `${title}: ${total} devices` }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: keyHeader }), el("th", { scope: "col", text: "Devices" }), el("th", { scope: "col", text: "Share" }))),
      el("tbody", {}, rows.map((r) => el("tr", { "data-key": r.key || r.label },
        el("th", { scope: "row", text: r.longLabel || r.label }), el("td", { text: r.value }), el("td", { text: `${pct(r.value, total)}%` }))))));
    return fig;
  }

  function tip(r, total) {
    return `${r.longLabel || r.label}: ${r.value} device${r.value === 1 ? "" : "s"} (${pct(r.value, total)}%)${r.detail ? ` — ${r.detail}` : ""}`;
  }

  function barChart(rows, total, width) {
    const rowH = 26, gap = 6, labelW = Math.min(150, Math.round(width * 0.4)), valueW = 64;
    const max = Math.max(1, ...rows.map((r) => r.value));
    const barW = Math.max(40, width - labelW - valueW);
    const height = rows.length * (rowH + gap);
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true", focusable: "false" });
    rows.forEach((r, i) => {
      const y = i * (rowH + gap);
      const w = r.value ? Math.max(2, Math.round((barW * r.value) / max)) : 0;
      s.append(
        svg("text", { x: labelW - 8, y: y + rowH / 2, "text-anchor": "end", "dominant-baseline": "central", text: r.label }),
        svg("rect", { x: labelW, y: y + 3, width: barW, height: rowH - 6, rx: 3, fill: "#eef1f5" }, svg("title", { text: tip(r, total) })),
        svg("rect", { class: "bar", x: labelW, y: y + 3, width: w, height: rowH - 6, rx: 3, fill: r.color, "data-label": r.label, "data-value": r.value },
          svg("title", { text: tip(r, total) })),
        svg("text", { class: "val", x: labelW + w + 6, y: y + rowH / 2, "dominant-baseline": "central", text: `${r.value} · ${pct(r.value, total)}%` }),
      );
    });
    return s;
  }

  function columnChart(rows, total, width) {
    const height = 200, top = 20, bottom = 28, left = 8;
    const max = Math.max(1, ...rows.map((r) => r.value));
    const slot = (width - left) / Math.max(1, rows.length);
    const colW = Math.min(64, slot * 0.65);
    const plotH = height - top - bottom;
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, "aria-hidden": "true", focusable: "false" });
    s.append(svg("line", { x1: left, x2: width, y1: top + plotH + 0.5, y2: top + plotH + 0.5, stroke: "#c4ccd5" }));
    rows.forEach((r, i) => {
      const h = r.value ? Math.max(2, Math.round((plotH * r.value) / max)) : 0;
      const cx = left + slot * i + slot / 2;
      s.append(
        svg("rect", { class: "bar", x: cx - colW / 2, y: top + plotH - h, width: colW, height: h, rx: 3, fill: r.color, "data-label": r.label, "data-value": r.value },
          svg("title", { text: tip(r, total) })),
        svg("text", { class: "val", x: cx, y: top + plotH - h - 6, "text-anchor": "middle", text: r.value }),
        svg("text", { x: cx, y: height - 8, "text-anchor": "middle", text: r.label }),
      );
    });
    return s;
  }

  // ------------------------------------------------------------------ lists of one customer (and of one device)
  // Each list of the API, declared once: its columns (a cell gets the item and the list's context, the
  // customer row), the noun for empty and failed states, and whether the API searches it.
  const orDash = (v) => (v === null || v === undefined || v === "" ? el("span", { class: "muted", text: "—" }) : String(v));
  const collectedFor = (ctx, entity) => !!(ctx && ctx.row && countOf(ctx.row.t, entity) !== null);
  const enabledUnits = (l) => (l.prepaidUnits ? l.prepaidUnits.enabled : null);
  function overBy(l) {
    const consumed = l.consumedUnits, enabled = enabledUnits(l);
    return isCount(consumed) && isCount(enabled) && consumed > enabled ? consumed - enabled : 0;
  }
  function licenceUse(l) {
    const over = overBy(l);
    return [`${num(l.consumedUnits)} / ${num(enabledUnits(l))}`, over ? [el("br"), el("span", { class: "chip chip-error", text: `over by ${num(over)}` })] : null];
  }
  const LISTS = {
    devices: { noun: "devices", range: "Devices", columns: [
      // The device's name opens its details (Autopilot, Entra ID, vulnerabilities) below the list.
      ["Device", (d, ctx) => [el("button", {
        type: "button", class: "btn-link device-link", "data-action": "device-details",
        onclick: (ev) => showDevice(ctx.row, d, ev.currentTarget),
      }, el("strong", { text: d.deviceName || "(no name)" }), el("span", { class: "visually-hidden", text: " details" })),
      el("br"), el("span", { class: "muted", text: d.serialNumber || "" })]],
      ["User", (d) => d.userPrincipalName || "—"],
      ["OS", (d) => [osRelease(d), el("br"), el("span", { class: "muted", text: d.osVersion || "" }),
        osChip(d) ? [el("br"), osChip(d)] : null]],
      ["Compliance", (d) => label(d.complianceState || "unknown")],
      ["Model", (d) => [d.manufacturer || "", " ", d.model || ""]],
      ["Last check-in", (d) => timeEl(d.lastSyncDateTime, "—")],
      ["Defender", (d, ctx) => (d.defender ? [`Risk ${d.defender.riskScore || "unknown"}`, el("br"), `Exposure ${d.defender.exposureLevel || "unknown"}`,
        d.vulnerabilities ? el("span", { class: "sevs" }, sevBadge("critical", d.vulnerabilities.critical), sevBadge("high", d.vulnerabilities.high))
          : collectedFor(ctx, "vulnerabilities") ? [el("br"), el("span", { class: "muted", text: "no vulnerabilities" })] : null]
        : el("span", { class: "muted", text: "not in Defender" }))],
      ["Autopilot and Entra ID", (d, ctx) => el("dl", { class: "facts" },
        el("dt", { text: "Autopilot" }), el("dd", { "data-entity": "autopilotDevices" }, d.autopilot
          ? [label(d.autopilot.enrollmentState || "unknown"), d.autopilot.groupTag ? el("span", { class: "muted", text: ` · ${d.autopilot.groupTag}` }) : null]
          : el("span", { class: "muted", text: collectedFor(ctx, "autopilotDevices") ? "not registered" : "—" })),
        el("dt", { text: "Entra ID" }), el("dd", { "data-entity": "entraDevices" }, d.entraDevice
          ? [TRUST_TYPES[d.entraDevice.trustType] || d.entraDevice.trustType || "unknown",
            d.entraDevice.accountEnabled === false ? [" ", el("span", { class: "chip chip-warn", text: "disabled" })] : null]
          : el("span", { class: "muted", text: collectedFor(ctx, "entraDevices") ? "not in Entra ID" : "—" })))],
    ] },
    software: { noun: "software", range: "Titles", columns: [
      ["Name", (s) => [el("strong", { text: s.displayName || "(no name)" }), el("br"), el("span", { class: "muted", text: s.publisher || "" })]],
      ["Version", (s) => s.version || "—"],
      ["Platform", (s) => label(s.platform || "")],
      ["Devices", (s) => num(s.deviceCount), "num"],
    ] },
    entraDevices: { noun: "Entra ID devices", range: "Devices", optional: true, columns: [
      ["Device", (e) => [el("strong", { text: e.displayName || "(no name)" }), el("br"), el("span", { class: "muted", text: e.deviceId || "" })]],
      ["OS", (e) => [e.operatingSystem || "", el("br"), el("span", { class: "muted", text: e.operatingSystemVersion || "" })]],
      ["Join type", (e) => TRUST_TYPES[e.trustType] || orDash(e.trustType)],
      ["Intune", (e) => (e.isManaged ? "managed" : el("span", { class: "chip chip-warn", text: "not managed" }))],
      ["Compliant", (e) => yesNo(e.isCompliant)],
      ["Account", (e) => (e.accountEnabled === false ? "disabled" : e.accountEnabled === true ? "enabled" : "—")],
      ["Last sign-in", (e) => timeEl(e.approximateLastSignInDateTime, "never")],
    ] },
    autopilotDevices: { noun: "Autopilot identities", range: "Identities", optional: true, columns: [
      ["Serial number", (a) => [el("strong", { text: a.serialNumber || "(no serial)" }), el("br"), el("span", { class: "muted", text: [a.manufacturer, a.model].filter(Boolean).join(" ") })]],
      ["Group tag", (a) => orDash(a.groupTag)],
      ["Enrolment", (a) => (a.enrolled ? label(a.enrollmentState || "enrolled")
        : [el("span", { class: "chip chip-warn", text: "not enrolled" }), el("br"), el("span", { class: "muted", text: label(a.enrollmentState || "unknown") })])],
      ["Purchase order", (a) => orDash(a.purchaseOrderIdentifier)],
      ["User", (a) => orDash(a.userPrincipalName)],
      ["Last contacted", (a) => timeEl(a.lastContactedDateTime, "never")],
    ] },
    licences: { noun: "licences", range: "Subscriptions", optional: true, rowClass: (l) => (overBy(l) ? "over" : null), columns: [
      ["Subscription", (l) => [el("strong", { text: l.skuPartNumber || "(no name)" }), el("br"), el("span", { class: "muted", text: l.skuId || "" })]],
      ["Status", (l) => label(l.capabilityStatus || "unknown")],
      ["Applies to", (l) => orDash(l.appliesTo)],
      ["Used / enabled", licenceUse, "num"],
      ["Warning / suspended / locked out", (l) => { const u = l.prepaidUnits || {}; return `${num(u.warning)} / ${num(u.suspended)} / ${num(u.lockedOut)}`; }, "num"],
    ] },
    vulnerabilities: { noun: "vulnerabilities", range: "Vulnerabilities", search: false, columns: [
      ["CVE", (v) => el("code", { text: v.cveId || "—" })],
      ["Severity", (v) => sevChip(v.severity)],
      ["Product", (v) => [el("strong", { text: v.productName || "(unknown)" }), el("br"),
        el("span", { class: "muted", text: [v.productVendor, v.productVersion].filter(Boolean).join(" · ") })]],
      ["Fix", (v) => (v.fixingKbId ? `KB${String(v.fixingKbId).replace(/^KB/i, "")}` : el("span", { class: "muted", text: "no update named" }))],
    ] },
  };

  const tenantPath = (row) => `integrations/${enc(row.integ.id)}/tenants/${enc(row.t.tenantId)}`;
  function browsedList(kind) {
    const row = findTenant(state.browseKey);
    return row ? { path: `${tenantPath(row)}/${kind}`, file: `${kind}-${row.t.defaultDomainName || row.t.tenantId}`, ctx: { row } } : null;
  }

  class Lister {
    // root holds a form (an optional "view" select of "kind?filter" values, optional search, rows), a table,
    // a pager and, for the lists the API exports, a CSV link; `source(kind)` names the list to read
    // ({path, file, ctx}) or null.
    constructor(root, { source = browsedList, hint = "Choose a customer." } = {}) {
      this.root = root;
      this.source = source;
      this.hint = hint;
      this.form = $("form", root);
      this.tbody = $("tbody", root);
      this.head = $("thead", root);
      this.range = $(".range", root);
      this.prevBtn = $(".prev", root);
      this.nextBtn = $(".next", root);
      this.csv = $(".csv", root);
      this.kind = null;
      this.ctx = null;
      this.links = [];   // the links of the pages visited, current last
      this.offsets = []; // the first row number of each of those pages
      this.next = null;
      this.shown = 0;
      $("table", root).classList.add("cards");
      this.applyView();
      this.form.addEventListener("submit", (ev) => { ev.preventDefault(); this.reset(); });
      if (this.form.elements.view) this.form.elements.view.addEventListener("change", () => this.reset());
      this.prevBtn.addEventListener("click", () => this.go(-1));
      this.nextBtn.addEventListener("click", () => this.go(1));
    }
    view() {
      const [kind, filter] = (this.form.elements.view ? this.form.elements.view.value : this.root.getAttribute("data-kind")).split("?");
      return { kind, filter: new URLSearchParams(filter || "") };
    }
    applyView() {
      const { kind } = this.view();
      if (kind === this.kind) return;
      this.kind = kind;
      this.root.setAttribute("data-kind", kind);
      this.head.replaceChildren(el("tr", {}, LISTS[kind].columns.map(([name, , cls]) => el("th", { scope: "col", class: cls || null, text: name }))));
      const search = this.form.elements.search;
      if (search) {
        search.disabled = LISTS[kind].search === false;
        search.closest("label").hidden = search.disabled;
      }
    }
    query(filter, extra) {
      const q = new URLSearchParams(filter);
      const search = this.form.elements.search;
      if (search && !search.disabled && search.value.trim()) q.set("search", search.value.trim());
      for (const [k, v] of Object.entries(extra)) q.set(k, v);
      return q.toString();
    }
    reset() {
      this.applyView();
      const { kind, filter } = this.view();
      const b = this.source(kind);
      this.ctx = b ? b.ctx : null;
      this.offsets = [0];
      if (!b) {
        this.links = [];
        this.renderRows([], null);
        if (this.csv) { this.csv.removeAttribute("href"); this.csv.setAttribute("aria-disabled", "true"); }
        return;
      }
      for (const [k, v] of Object.entries(b.params || {})) filter.set(k, v);
      this.links = [`${b.path}?${this.query(filter, { top: this.form.elements.top.value })}`];
      if (this.csv) {
        // The CSV link carries the key in ?code= (a plain download cannot send a header); it is built
        // here from the page's own address, never written into the served HTML.
        this.csv.href = apiPath(`${b.path}?${this.query(filter, { format: "csv" })}`) + (KEY ? `&code=${enc(KEY)}` : "");
        this.csv.setAttribute("download", `${b.file}.csv`);
        this.csv.removeAttribute("aria-disabled");
      }
      this.tbody.replaceChildren(el("tr", {}, el("td", { colspan: LISTS[kind].columns.length, class: "muted nolabel", text: "Loading…" })));
      this.range.textContent = "";
      this.load();
    }
    go(step) {
      if (step > 0 && this.next) {
        this.offsets.push(this.offsets[this.offsets.length - 1] + this.shown);
        this.links.push(this.next);
      } else if (step < 0 && this.links.length > 1) {
        this.links.pop();
        this.offsets.pop();
      } else return;
      this.load();
    }
    async load() {
      const link = this.links[this.links.length - 1];
      this.root.setAttribute("aria-busy", "true");
      try {
        const page = await api(link);
        if (link !== this.links[this.links.length - 1]) return;
        const rows = (page && page.value) || [];
        this.renderRows(rows, page && page.nextLink);
      } catch (err) {
        if (err instanceof KeyProblem) { showKeyProblem(); return; }
        if (link !== this.links[this.links.length - 1]) return;
        this.tbody.replaceChildren(el("tr", {}, el("td", { colspan: LISTS[this.kind].columns.length, class: "muted nolabel", text: `Could not load ${LISTS[this.kind].noun}: ${err.message}` })));
        this.range.textContent = "";
      } finally {
        this.root.removeAttribute("aria-busy");
      }
    }
    renderRows(rows, next) {
      this.next = next || null;
      this.shown = rows.length;
      const offset = this.offsets[this.offsets.length - 1] || 0;
      const spec = LISTS[this.kind];
      const cols = spec.columns;
      const collected = !spec.optional || collectedFor(this.ctx, this.kind);
      const empty = !this.links.length ? this.hint : collected ? `No ${spec.noun} found.` : `${label(spec.noun)} are not collected for this customer.`;
      this.tbody.replaceChildren(...(rows.length ? rows.map((item) => el("tr", { class: spec.rowClass ? spec.rowClass(item) : null },
        cols.map(([name, cell, cls]) => el("td", { "data-label": name, class: cls || null }, cell(item, this.ctx)))))
        : [el("tr", {}, el("td", { colspan: cols.length, class: "muted nolabel", text: empty }))]));
      this.range.textContent = rows.length ? `${spec.range} ${offset + 1}–${offset + rows.length}` : "";
      this.prevBtn.disabled = this.links.length <= 1;
      this.nextBtn.disabled = !this.next;
    }
  }
  const more = new Lister($("#more"));
  const listers = [new Lister($("#devices")), new Lister($("#software")), more];

  // ------------------------------------------------------------------ one device
  const deviceState = { row: null, device: null, opener: null };
  const vulnLister = new Lister($("#device-vulns"), {
    hint: "Choose a device.",
    source: (kind) => (deviceState.device ? {
      path: `${tenantPath(deviceState.row)}/devices/${enc(deviceState.device.id)}/${kind}`,
      file: `${kind}-${deviceState.device.deviceName || deviceState.device.id}`, ctx: { row: deviceState.row },
    } : null),
  });
  function detailGroup(id, title, pairs, empty) {
    return el("div", { class: "detail-group", "data-group": id }, el("h4", { text: title }),
      pairs ? el("dl", {}, pairs.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])) : el("p", { class: "muted", text: empty }));
  }
  function renderDevice(row, d) {
    const a = d.autopilot, e = d.entraDevice, v = d.vulnerabilities, t = row.t;
    $("#device-h").textContent = `Device ${d.deviceName || d.id}`;
    $("#device-facts").replaceChildren(
      detailGroup("intune", "Intune", [
        ["Serial number", orDash(d.serialNumber)], ["User", orDash(d.userPrincipalName)],
        ["OS", `${osRelease(d)} (${d.osVersion || "version unknown"})`], ["OS support", osSupportDetail(d)],
        ["Compliance", label(d.complianceState || "unknown")],
        ["Last check-in", timeEl(d.lastSyncDateTime, "—")],
        ["Defender", d.defender ? `risk ${d.defender.riskScore || "unknown"}, exposure ${d.defender.exposureLevel || "unknown"}` : "not in Defender"],
      ]),
      detailGroup("autopilot", "Windows Autopilot", a ? [
        ["Enrolment", label(a.enrollmentState || "unknown")], ["Group tag", orDash(a.groupTag)],
        ["Purchase order", orDash(a.purchaseOrderIdentifier)], ["Last contacted", timeEl(a.lastContactedDateTime, "never")],
        ["Matched by", MATCHED_BY[a.matchedBy] || orDash(a.matchedBy)],
      ] : null, countOf(t, "autopilotDevices") === null ? "Autopilot is not collected for this customer." : "Not registered in Windows Autopilot."),
      detailGroup("entra", "Entra ID", e ? [
        ["Join type", TRUST_TYPES[e.trustType] || orDash(e.trustType)], ["Compliant", yesNo(e.isCompliant)],
        ["Account", e.accountEnabled === false ? el("span", { class: "chip chip-warn", text: "disabled" }) : e.accountEnabled === true ? "enabled" : "—"],
        ["Last sign-in", timeEl(e.approximateLastSignInDateTime, "never")],
        ["Registered", when(e.registrationDateTime) === null ? "—" : df.format(new Date(e.registrationDateTime))],
      ] : null, countOf(t, "entraDevices") === null ? "Entra ID devices are not collected for this customer." : "Not found in Entra ID."),
      detailGroup("vulnerabilities", "Vulnerabilities", v ? [
        ["By severity", el("span", { class: "sevs" }, SEVERITIES.map((s) => sevBadge(s, v[s])))],
        ["In all", num(v.total)],
        ["Most severe", (v.topCves || []).length ? el("ul", { class: "cves" }, v.topCves.map((c) => el("li", {}, el("code", { text: c })))) : "—"],
      ] : null, countOf(t, "vulnerabilities") === null ? "Vulnerabilities are not collected for this customer."
        : d.defender ? "Defender lists none for this device." : "Not in Defender."),
    );
  }
  // The listed device carries its Autopilot, Entra ID and vulnerability summaries (docs/api.md, Device);
  // only its vulnerability list is read again.
  function showDevice(row, d, opener) {
    Object.assign(deviceState, { row, device: d, opener });
    const panel = $("#device-detail");
    panel.hidden = false;
    renderDevice(row, d);
    vulnLister.reset();
    panel.scrollIntoView({ behavior: "smooth", block: "start" });
    $("#device-h").focus({ preventScroll: true });
  }
  function closeDevice(refocus) {
    const panel = $("#device-detail");
    if (panel.hidden) return;
    panel.hidden = true;
    const opener = deviceState.opener;
    Object.assign(deviceState, { row: null, device: null, opener: null });
    vulnLister.reset();
    if (refocus) (opener && opener.isConnected ? opener : $("#devices input[name=search]")).focus();
  }

  function pickBrowseDefault() {
    const rows = allTenants().filter((r) => r.t.status !== "excluded" && r.t.counts && r.t.counts.devices);
    if (!rows.length) return;
    rows.sort((a, b) => tenantName(a.t).localeCompare(tenantName(b.t)));
    selectBrowse(rows[0].key);
  }

  // ------------------------------------------------------------------ operating (docs/api.md, Integrations)
  // Forms are static markup in console.html; values from the API reach them as .value / textContent.
  // Secret inputs are password fields: their values go into one request body and are cleared at once,
  // never logged, never put back into the page.
  const COLLECTABLE = ["autopilotDevices", "entraDevices", "vulnerabilities", "licences"];
  const manage = { id: "", integ: null, etag: null, signinTimer: null, filled: "" };
  const integName = (i) => (i && (i.displayName || i.id)) || "";
  function say(node, text, tone) {
    node.textContent = "";
    node.classList.toggle("bad", tone === "bad");
    node.classList.toggle("good", tone === "good");
    // Set after a tick, so that a screen reader announces the same text twice in a row.
    setTimeout(() => { node.textContent = text; }, 30);
  }
  function showKinds(root, kind) {
    root.querySelectorAll("[data-kinds]").forEach((n) => {
      n.hidden = !n.getAttribute("data-kinds").split(" ").includes(kind);
      n.querySelectorAll("input, textarea, select").forEach((i) => { i.disabled = n.hidden; });
    });
  }
  const guids = (text) => String(text || "").split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);
  function dateToIso(value) { return value ? `${value}T00:00:00Z` : undefined; }

  // A problem document's errors[] beside the inputs they name (field "tenantFilter.include[2]" goes
  // beside tenantFilter.include); the rest, and the request as a whole, at the top of the form.
  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((n) => n.replaceChildren());
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  }
  function showErrors(form, err, intro) {
    clearErrors(form);
    const p = (err && err.problem) || {};
    const list = Array.isArray(p.errors) && p.errors.length ? p.errors : [{ field: "", message: err.message }];
    const slotFor = (field) => {
      const plain = String(field || "").replace(/\[\d+\]$/, "");
      for (const name of [field, plain, plain.split(".")[0]]) {
        const slot = form.querySelector(`[data-error-for="${CSS.escape(name || "")}"]`);
        if (slot && !slot.closest("[hidden]")) return slot;
      }
      return form.querySelector('[data-error-for=""]');
    };
    let first = null;
    for (const e of list) {
      const slot = slotFor(e.field);
      const at = /\[(\d+)\]$/.exec(String(e.field || ""));
      slot.append(el("span", { class: "err", "data-code": e.code || null },
        !slot.getAttribute("data-error-for") && e.field ? el("code", { text: e.field }) : null,
        !slot.getAttribute("data-error-for") && e.field ? " " : null,
        at ? `Entry ${Number(at[1]) + 1}: ` : "", e.message || e.code || "",
        e.action ? el("span", { class: "action", text: e.action }) : null));
      const input = form.querySelector(`[data-error-field="${CSS.escape(slot.getAttribute("data-error-for"))}"]`);
      if (input && slot.getAttribute("data-error-for")) {
        input.setAttribute("aria-invalid", "true");
        const id = `err-${slot.getAttribute("data-error-for").replace(/\W/g, "-")}-${form.id}`;
        slot.id = id;
        input.setAttribute("aria-describedby", id);
        first = first || input;
      }
    }
    const top = form.querySelector('[data-error-for=""]');
    if (intro) top.prepend(el("span", { class: "err", text: intro }));
    if (first) first.focus();
    else { top.setAttribute("tabindex", "-1"); top.focus(); }
  }
  // The problem's title when errors[] says the rest beside the fields.
  const headline = (err) => (err.problem && err.problem.title) || err.message;
  function fail(err, form, intro) {
    if (err instanceof KeyProblem) { showKeyProblem(); return true; }
    if (form) showErrors(form, err, intro);
    return false;
  }

  // ---- the integration picked in "Manage an integration"
  function renderManage() {
    const pick = $("#manage-integ");
    const opts = state.integrations.map((i) => el("option", { value: i.id, text: `${integName(i)}${i.status === "disabled" ? " (disabled)" : ""}` }));
    const sig = state.integrations.map((i) => `${i.id}=${integName(i)}:${i.status}`).join("|");
    if (pick.getAttribute("data-sig") !== sig) {
      pick.setAttribute("data-sig", sig);
      pick.replaceChildren(...(opts.length ? opts : [el("option", { value: "", text: "No integrations yet" })]));
      const audit = $("#audit-integ");
      const chosen = audit.value;
      audit.replaceChildren(el("option", { value: "", text: "All integrations" }),
        ...state.integrations.map((i) => el("option", { value: i.id, text: integName(i) })));
      audit.value = [...audit.options].some((o) => o.value === chosen) ? chosen : "";
    }
    if (!state.integrations.some((i) => i.id === manage.id)) manage.id = state.integrations.length ? state.integrations[0].id : "";
    pick.value = manage.id;
    $("#manage").querySelectorAll("button, input, textarea").forEach((n) => { if (!manage.id) n.disabled = true; });
    if (manage.id && manage.filled !== manage.id) loadManaged().catch(() => {});
    renderConsentList();
  }
  async function loadManaged(note) {
    const id = manage.id;
    manage.filled = id;
    try {
      const r = await call(`integrations/${enc(id)}`);
      if (id !== manage.id) return;
      manage.integ = r.data;
      manage.etag = r.etag;
      fillManage(note);
    } catch (err) {
      if (!fail(err)) say($("#manage-result"), `Could not read ${id}: ${err.message}`, "bad");
    }
  }
  function fillManage(note) {
    const i = manage.integ;
    const box = $("#manage");
    showKinds(box, i.kind);
    const f = $("#edit-form");
    clearErrors(f);
    clearErrors($("#secrets-form"));
    f.elements.displayName.value = i.displayName || "";
    f.elements.includeDefender.checked = i.includeDefender !== false;
    const collected = Array.isArray(i.collect) ? i.collect : COLLECTABLE;
    f.querySelectorAll("input[name=collect]").forEach((c) => { c.checked = collected.includes(c.value); });
    const tf = i.tenantFilter || {};
    if (!f.elements.include.disabled) {
      f.elements.include.value = (tf.include || []).join("\n");
      f.elements.exclude.value = (tf.exclude || []).join("\n");
    }
    const disabled = i.status === "disabled";
    $("#status-text").replaceChildren("This integration is ", el("strong", { text: i.status || "active" }),
      disabled ? ": no scheduled or manual syncs. Enable it to sync again." : ": it syncs on schedule.");
    const toggle = $("#toggle-status");
    toggle.textContent = disabled ? "Enable" : "Disable";
    toggle.append(el("span", { class: "visually-hidden", text: ` ${integName(i)}` }));
    toggle.disabled = false;
    $("#delete-integ").disabled = false;
    $("#delete-confirm").hidden = true;
    box.querySelectorAll("form button, #consent-box button").forEach((b) => { b.disabled = false; });
    $("#signin-state").replaceChildren();
    renderConsentList();
    if (note) say($("#manage-result"), note.text, note.tone);
  }
  const integPath = () => `integrations/${enc(manage.id)}`;
  async function afterChange(text, tone) {
    state.fleet.clear();
    await refresh();
    auditLister.reset();
    await loadManaged({ text, tone: tone || "good" });
  }

  // ---- PATCH with If-Match
  async function patch(change, form, what) {
    const name = integName(manage.integ);
    try {
      const r = await call(integPath(), { method: "PATCH", body: change, headers: manage.etag ? { "if-match": manage.etag } : {} });
      manage.integ = r.data;
      manage.etag = r.etag || manage.etag;
      await afterChange(`${what} for ${integName(r.data) || name}.`);
    } catch (err) {
      if (err instanceof KeyProblem) { showKeyProblem(); return; }
      if (err.status === 412) {
        await loadManaged({ text: `Someone changed ${name} first, so nothing was saved. The form now shows the current settings: make your change again.`, tone: "bad" });
        $("#manage-h").focus();
        return;
      }
      if (form) showErrors(form, err, `Not saved: ${headline(err)}`);
      else say($("#manage-result"), `Not done: ${err.message}`, "bad");
    }
  }
  $("#edit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget;
    clearErrors(f);
    const change = {
      displayName: f.elements.displayName.value.trim(),
      includeDefender: f.elements.includeDefender.checked,
      collect: [...f.querySelectorAll("input[name=collect]:checked")].map((c) => c.value),
    };
    if (manage.integ.kind === "multiTenant") change.tenantFilter = { include: guids(f.elements.include.value), exclude: guids(f.elements.exclude.value) };
    const button = f.querySelector("button[type=submit]");
    button.disabled = true;
    try { await patch(change, f, "Changes saved"); } finally { button.disabled = false; }
  });
  $("#toggle-status").addEventListener("click", async (ev) => {
    const b = ev.currentTarget;
    const status = manage.integ.status === "disabled" ? "active" : "disabled";
    b.disabled = true;
    await patch({ status }, null, status === "active" ? "Enabled: syncs again" : "Disabled: no more syncs");
    b.disabled = false;
    b.focus();
  });

  // ---- DELETE, after a confirmation that names the integration
  $("#delete-integ").addEventListener("click", () => {
    $("#delete-q").textContent = `Delete “${integName(manage.integ)}”? memsync stops syncing it and deletes its secrets from Key Vault; this cannot be undone.`;
    $("#delete-yes").textContent = `Delete ${integName(manage.integ)}`;
    $("#delete-purge").checked = false;
    $("#delete-confirm").hidden = false;
    $("#delete-no").focus();
  });
  $("#delete-no").addEventListener("click", () => { $("#delete-confirm").hidden = true; $("#delete-integ").focus(); });
  $("#delete-yes").addEventListener("click", async (ev) => {
    const name = integName(manage.integ);
    ev.currentTarget.disabled = true;
    try {
      await api(`${integPath()}${$("#delete-purge").checked ? "?purgeAssets=true" : ""}`, { method: "DELETE" });
      $("#delete-confirm").hidden = true;
      manage.filled = "";
      await afterChange(`${name} is deleted.`);
    } catch (err) {
      if (!fail(err)) say($("#manage-result"), `${name} was not deleted: ${err.message}`, "bad");
    } finally { ev.currentTarget.disabled = false; }
  });

  // ---- PUT .../secrets
  $("#secrets-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget;
    clearErrors(f);
    const body = {};
    for (const role of ["syncApp", "partnerApp"]) {
      const secret = f.elements[`${role}Secret`];
      if (secret.disabled || !secret.value) continue;
      body[`${role}Secret`] = secret.value;
      const on = dateToIso(f.elements[`${role}SecretExpiresOn`].value);
      if (on) body[`${role}SecretExpiresOn`] = on;
    }
    // The values leave the page with this request and nowhere else.
    f.querySelectorAll("input[type=password]").forEach((i) => { i.value = ""; });
    if (!Object.keys(body).length) {
      showErrors(f, { problem: { errors: [{ field: "syncAppSecret", message: "Type the new secret's Value first." }] } });
      return;
    }
    const button = f.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const r = await call(`${integPath()}/secrets`, { method: "PUT", body });
      manage.integ = r.data;
      f.querySelectorAll("input[type=date]").forEach((i) => { i.value = ""; });
      await afterChange(`New secret${Object.keys(body).filter((k) => k.endsWith("Secret")).length > 1 ? "s" : ""} accepted and stored for ${integName(r.data)}.`);
    } catch (err) {
      fail(err, f, `Not rotated: ${headline(err)}. Nothing changed; type the secret again.`);
    } finally { button.disabled = false; }
  });

  // ---- partner sign-in and consent (multiTenant)
  function renderConsentList() {
    const list = $("#consent-list");
    const tenants = state.tenants.get(manage.id);
    const rows = Array.isArray(tenants) ? [...tenants].sort((a, b) => tenantName(a).localeCompare(tenantName(b))) : [];
    const integ = state.integrations.find((i) => i.id === manage.id);
    if (!integ || integ.kind !== "multiTenant") { list.replaceChildren(); return; }
    const sig = rows.map((t) => t.tenantId + tenantName(t)).join("|");
    if (list.getAttribute("data-sig") === `${manage.id}:${sig}`) return;
    list.setAttribute("data-sig", `${manage.id}:${sig}`);
    keepFocus(() => list.replaceChildren(...rows.map((t) => el("li", { "data-tenant": t.tenantId },
      el("span", { class: "cust-name", text: tenantName(t) }),
      el("button", { type: "button", class: "btn btn-quiet btn-small", "data-action": "consent-tenant",
        "data-focus-id": `consent:${manage.id}/${t.tenantId}`, onclick: (ev) => consentOne(ev.currentTarget, t) },
      "Consent", el("span", { class: "visually-hidden", text: ` in ${tenantName(t)}` })),
      el("span", { class: "consent-result", "aria-live": "polite" })))));
  }
  function consentText(r) {
    const words = { consented: "consented", alreadyConsented: "already consented", reconsented: "consented again", failed: "failed" };
    const e = r.error;
    return `${words[r.status] || r.status || "done"}${r.queued ? "; sync queued" : ""}${e ? `: ${e.message || e.code}${e.action ? ` What to do: ${e.action}` : ""}` : ""}`;
  }
  async function consentOne(button, t) {
    const slot = button.parentElement.querySelector(".consent-result");
    button.disabled = true;
    try {
      const r = await api(`${integPath()}/tenants/${enc(t.tenantId)}/consent`, { method: "POST" });
      say(slot, consentText(r), r.error ? "bad" : "good");
      refresh();
    } catch (err) {
      if (fail(err)) return;
      const e = (err.problem.errors || [])[0] || {};
      say(slot, `not consented: ${err.message}${e.action ? ` What to do: ${e.action}` : ""}`, "bad");
    } finally { button.disabled = false; }
  }
  $("#consent-all").addEventListener("click", async (ev) => {
    const b = ev.currentTarget;
    b.disabled = true;
    try {
      const r = await api(`${integPath()}/consent`, { method: "POST" });
      const names = new Map((state.tenants.get(manage.id) || []).map((t) => [t.tenantId, tenantName(t)]));
      for (const one of (r && r.value) || []) {
        const slot = $(`#consent-list li[data-tenant="${CSS.escape(one.tenantId)}"] .consent-result`);
        if (slot) say(slot, consentText(one), one.error ? "bad" : "good");
      }
      say($("#manage-result"), `Consent in ${num(r.consented)} customer${r.consented === 1 ? "" : "s"}, ${num(r.failed)} failed${(r.value || []).length ? "" : ": none needed it"}.`
        + (r.failed ? ` Failed: ${(r.value || []).filter((x) => x.status === "failed").map((x) => names.get(x.tenantId) || x.tenantId).join(", ")}.` : ""), r.failed ? "bad" : "good");
      refresh();
    } catch (err) {
      if (!fail(err)) say($("#manage-result"), `Consent not run: ${err.message}${actionOf(err)}`, "bad");
    } finally { b.disabled = false; }
  });
  const actionOf = (err) => { const e = ((err.problem || {}).errors || [])[0]; return e && e.action ? ` What to do: ${e.action}` : ""; };
  function renderSignin(s) {
    const box = $("#signin-state");
    const link = /^https:\/\//i.test(s.verificationUri || "")
      ? el("a", { href: s.verificationUri, target: "_blank", rel: "noopener noreferrer", text: s.verificationUri })
      : el("span", { text: s.verificationUri || "" });
    const parts = { pending: [el("p", {}, "A partner admin opens ", link, " and enters the code ", el("strong", { class: "user-code", text: s.userCode || "" }),
      s.expiresAt ? ` before ${dtf.format(new Date(s.expiresAt))}.` : "."), s.message ? el("p", { class: "muted", text: s.message }) : null],
    done: el("p", { class: "good", text: `Signed in${s.signedInAs ? ` as ${s.signedInAs}` : ""}. Consent can run now.` }),
    failed: el("p", { class: "bad", text: `Sign-in failed${s.error ? `: ${s.error.message || s.error.code}` : ""}.` }),
    expired: el("p", { class: "bad", text: "The code expired before anyone signed in. Start again." }),
    notStarted: el("p", { class: "muted", text: "No sign-in started." }) };
    box.replaceChildren(el("div", { "data-signin": s.status }, parts[s.status] || el("p", { text: s.status })));
    if (s.status !== "pending") announce(box.textContent);
  }
  async function pollSignin(id, interval) {
    clearTimeout(manage.signinTimer);
    manage.signinTimer = setTimeout(async () => {
      if (id !== manage.id) return;
      try {
        const s = await api(`integrations/${enc(id)}/partner-signin`);
        renderSignin(s);
        if (s.status === "pending") pollSignin(id, s.interval || interval);
      } catch (err) {
        if (!fail(err)) say($("#manage-result"), `Sign-in state not read: ${err.message}`, "bad");
      }
    }, Math.max(1, interval || 5) * 1000);
  }
  $("#signin-start").addEventListener("click", async (ev) => {
    const b = ev.currentTarget;
    b.disabled = true;
    try {
      const s = await api(`${integPath()}/partner-signin`, { method: "POST" });
      renderSignin(s);
      if (s.status === "pending") pollSignin(manage.id, s.interval);
    } catch (err) {
      if (!fail(err)) say($("#manage-result"), `Sign-in not started: ${err.message}${actionOf(err)}`, "bad");
    } finally { b.disabled = false; }
  });
  $("#manage-integ").addEventListener("change", (ev) => {
    manage.id = ev.target.value;
    clearTimeout(manage.signinTimer);
    $("#manage-result").textContent = "";
    loadManaged().catch(() => {});
  });

  // ---- POST /api/alerts/check
  $("#check-secrets").addEventListener("click", async (ev) => {
    const b = ev.currentTarget;
    b.disabled = true;
    const out = $("#check-result");
    try {
      const r = await api("alerts/check", { method: "POST" });
      const failures = (r.failures || []).length;
      say(out, `Checked ${num(r.secretsChecked)} secret${r.secretsChecked === 1 ? "" : "s"}: ${num(r.alertsRaised)} alert${r.alertsRaised === 1 ? "" : "s"} raised, ${num(r.alertsResolved)} resolved`
        + `${failures ? `, ${failures} could not be checked (tried again on the next run)` : ""}.`, failures ? "bad" : "good");
      refresh();
    } catch (err) {
      if (!fail(err)) say(out, `The check did not run: ${err.message}`, "bad");
    } finally { b.disabled = false; }
  });

  // ---- POST /api/integrations
  const reg = $("#register-form");
  const regKind = () => reg.querySelector("input[name=kind]:checked").value;
  showKinds(reg, regKind());
  reg.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", () => { showKinds(reg, regKind()); clearErrors(reg); }));
  reg.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(reg);
    const kind = regKind();
    const v = (name) => (reg.elements[name] && !reg.elements[name].disabled ? reg.elements[name].value.trim() : "");
    const body = { kind, includeDefender: reg.elements.includeDefender.checked,
      collect: [...reg.querySelectorAll("input[name=collect]:checked")].map((c) => c.value) };
    if (v("displayName")) body.displayName = v("displayName");
    const ids = kind === "multiTenant" ? ["partnerTenantId", "partnerAppId", "syncAppId"] : ["tenantId", "syncAppId"];
    for (const name of ids) body[name] = v(name);
    for (const role of kind === "multiTenant" ? ["partnerApp", "syncApp"] : ["syncApp"]) {
      body[`${role}Secret`] = reg.elements[`${role}Secret`].value;
      const on = dateToIso(v(`${role}SecretExpiresOn`));
      if (on) body[`${role}SecretExpiresOn`] = on;
    }
    if (kind === "multiTenant") {
      const include = guids(v("include")), exclude = guids(v("exclude"));
      if (include.length || exclude.length) body.tenantFilter = { include, exclude };
    }
    reg.querySelectorAll("input[type=password]").forEach((i) => { i.value = ""; });
    const out = $("#register-result");
    out.replaceChildren();
    const button = reg.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const r = await call("integrations", { method: "POST", body });
      const i = r.data || {};
      const warnings = i.warnings || [];
      out.replaceChildren(el("div", { class: "registered", tabindex: "-1" },
        el("p", { class: "good" }, "Registered ", el("strong", { text: integName(i) }), " (", el("code", { text: i.id || "" }),
          `, ${i.kind === "singleTenant" ? "one tenant" : "partner"}). Its first sync is queued; its customers appear under Customers.`),
        warnings.length ? el("ul", { class: "warnings" }, warnings.map((w) => el("li", { "data-code": w.code || null },
          el("span", { class: "chip chip-warn", text: w.code || "warning" }), " ",
          w.field ? el("code", { text: w.field }) : null, w.field ? " " : null, w.message || "",
          w.action ? el("p", { class: "action", text: w.action }) : null))) : null));
      reg.querySelectorAll("input[type=date], input[spellcheck], textarea").forEach((n) => { n.value = ""; });
      reg.elements.displayName.value = "";
      manage.id = i.id || manage.id;
      manage.filled = "";
      out.firstChild.focus();
      refresh().then(() => auditLister.reset());
    } catch (err) {
      fail(err, reg, `Not registered: ${headline(err)}. Type the secrets again after fixing the fields below.`);
    } finally { button.disabled = false; }
  });

  // ---- GET /api/audit
  LISTS.audit = { noun: "audit records", range: "Records", search: false, columns: [
    ["When", (a) => timeEl(a.at, "—")],
    ["Action", (a) => [el("code", { text: a.action || "" }), el("br"), el("span", { class: "muted", text: `${a.method || ""} ${a.route || ""}` })]],
    ["Outcome", (a) => el("span", { class: `chip ${a.outcome === "done" ? "chip-ok" : a.outcome === "refused" ? "chip-warn" : "chip-error"}`, text: `${a.outcome || "?"} ${a.status || ""}` })],
    ["Integration", (a) => { const i = state.integrations.find((x) => x.id === a.integrationId); return a.integrationId ? [i ? el("strong", { text: integName(i) }) : null, i ? el("br") : null, el("span", { class: "muted", text: a.integrationId })] : "—"; }],
    ["Tenant", (a) => orDash(a.tenantId)],
    ["Fields", (a) => ((a.fields || []).length ? a.fields.join(", ") : "—")],
    ["Code", (a) => (a.code ? el("code", { text: a.code }) : "—")],
    ["Who", (a) => [(a.actor && (a.actor.name || a.actor.kind)) || "—", el("br"), el("span", { class: "muted", text: a.address || "" })]],
  ] };
  const auditLister = new Lister($("#audit-list"), {
    hint: "No records.",
    source: () => ({ path: "audit", file: "audit", params: $("#audit-integ").value ? { integrationId: $("#audit-integ").value } : {} }),
  });
  $("#audit-integ").addEventListener("change", () => auditLister.reset());

  // ------------------------------------------------------------------ wiring
  $("#refresh").addEventListener("click", () => { state.fleet.clear(); fleetSig = ""; refresh(); });
  $("#fleet-scope").addEventListener("change", (ev) => { state.fleetScope = ev.target.value; loadFleet().catch(onError); });
  $("#browse-tenant").addEventListener("change", (ev) => selectBrowse(ev.target.value));
  $("#device-close").addEventListener("click", () => closeDevice(true));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.loadedOnce) renderCharts(lastFleet); }, 150);
  });
  for (const l of [...listers, vulnLister]) l.renderRows([], null);
  refresh().then(() => auditLister.reset());
})();
