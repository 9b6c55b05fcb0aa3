// The status page: polls /api/status and renders it with textContent only (scan text is
// whatever a barcode said, so it is never parsed as HTML).
"use strict";

const POLL_MS = 2000;
const ACTION = { method: "POST", headers: { "X-Storeedge-Action": "1" } };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function renderSync(doc) {
  const dl = document.getElementById("sync");
  dl.replaceChildren();
  const out = doc.outbox || {};
  const sync = doc.sync || {};
  const rows = [
    ["State", sync.state || "?"],
    ["Backlog", `${out.backlog_events ?? "?"} events` +
      (out.oldest_unsynced_age_s ? ` (oldest ${Math.round(out.oldest_unsynced_age_s)} s)` : "")],
    ["Last sync", ago(sync.last_sync_at)],
    ["Cloud token", doc.cloud.auth === "ok" ? "accepted" : "REFUSED"],
    ["Clock offset", doc.cloud.clock_offset_s == null ? "unknown" : `${doc.cloud.clock_offset_s} s`],
    ["Dead letters", out.dead_letters ?? 0],
  ];
  const losses = Object.entries(out.losses || {});
  if (losses.length) rows.push(["Losses", losses.map(([k, v]) => `${k}: ${v}`).join(", ")]);
  if (sync.last_error) rows.push(["Last error", sync.last_error]);
  for (const [k, v] of rows) { dl.append(el("dt", k), el("dd", v)); }
}

function renderAlert(doc) {
  const box = document.getElementById("alert");
  const lines = [];
  if (doc.cloud.auth === "refused") {
    lines.push("The cloud refuses this box's token (revoked?). Scans are kept on the box. " +
               "Re-enroll: storeedge agent enroll --cloud URL --code CODE");
  }
  for (const w of (doc.watchdog || {}).wedged || []) lines.push(`Stuck: ${w.name}`);
  for (const a of (doc.outbox || {}).alerts || []) lines.push(a);
  box.hidden = lines.length === 0;
  box.textContent = lines.join(" · ");
}

function button(label, run) {
  const b = el("button", label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await run(); } finally { b.disabled = false; }
  });
  return b;
}

function showResult(text) {
  const p = document.getElementById("test-result");
  p.hidden = false;
  p.textContent = text;
  p.scrollIntoView({ block: "nearest" });
}

async function action(url) {
  const response = await fetch(url, ACTION);
  let body = {};
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  return { ok: response.ok, body };
}

function renderDevices(doc) {
  const list = document.getElementById("devices");
  const template = document.getElementById("device-row");
  list.replaceChildren();
  if (!doc.devices.length) list.append(el("li", "No devices in agent.toml."));
  for (const d of doc.devices) {
    const row = template.content.firstElementChild.cloneNode(true);
    row.querySelector(".dot").classList.add(d.state);
    row.querySelector(".id").textContent = d.device_id;
    row.querySelector(".kind").textContent = d.kind;
    row.querySelector(".state").textContent =
      `${d.state}${d.condition ? " · " + d.condition : ""}${d.detail ? " · " + d.detail : ""}`;
    const actions = row.querySelector(".actions");
    const id = encodeURIComponent(d.device_id);
    if (d.kind === "printer") {
      actions.append(button("Test print", async () => {
        showResult(`Printing a test page on ${d.device_id}…`);
        const r = await action(`/api/devices/${id}/test-print`);
        showResult(r.ok ? `${d.device_id}: ${r.body.status} — ${r.body.detail}` : r.body.error);
      }));
    }
    if (d.kind === "scanner") {
      actions.append(button("Test scan", async () => {
        showResult(`Scan something with ${d.device_id} now (30 s)…`);
        const r = await action(`/api/devices/${id}/test-scan?timeout=30`);
        showResult(r.ok ? `${d.device_id} read "${r.body.text}" → ${r.body.classification}` +
          (r.body.symbology ? ` (${r.body.symbology})` : "") +
          (r.body.reason ? `: ${r.body.reason}` : "") : r.body.error);
      }));
    }
    list.append(row);
  }
}

function renderScans(doc) {
  const list = document.getElementById("scans");
  list.replaceChildren();
  if (!doc.scans.length) list.append(el("li", "No scans since the agent started."));
  for (const s of doc.scans) {
    const li = el("li");
    li.append(el("div", s.text || "(empty)", "text"));
    const meta = el("div", null, "meta");
    meta.append(el("span", s.classification, `tag ${s.classification}`));
    if (s.symbology) meta.append(el("span", s.symbology, "tag"));
    meta.append(document.createTextNode(`${s.device_id} · ${ago(s.at)}`));
    if (s.reason) meta.append(document.createTextNode(` · ${s.reason}`));
    if (s.decode_error) meta.append(document.createTextNode(` · ${s.decode_error}`));
    if (s.gs1) {
      meta.append(document.createTextNode(" · GS1 " + Object.entries(s.gs1)
        .map(([ai, v]) => `(${ai}) ${v}`).join(" ")));
    }
    li.append(meta);
    list.append(li);
  }
}

async function poll() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    const doc = await response.json();
    document.getElementById("who").textContent =
      `store ${doc.agent.store_id} · agent ${doc.agent.agent_id} · v${doc.agent.version}`;
    renderAlert(doc);
    renderSync(doc);
    renderDevices(doc);
    renderScans(doc);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    document.getElementById("updated").textContent = `cannot reach the agent: ${e.message}`;
  }
}

poll();
setInterval(poll, POLL_MS);
