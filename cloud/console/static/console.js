// storeedge console: local times, live updates over SSE, keyboard shortcuts. No dependencies.
"use strict";
(function () {
  const dayFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  const clockFormat = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const fullFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "full", timeStyle: "long",
  });
  // Today: the clock to the second; other days: date and minute. The full form is the title.
  function short(when) {
    const now = new Date();
    return when.toDateString() === now.toDateString() ? clockFormat.format(when) : dayFormat.format(when);
  }
  const hourFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  // Server HTML carries UTC; rewrite every <time> (and chart hour labels) into local time.
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = fullFormat.format(when) + " (" + el.getAttribute("datetime") + ")";
      el.textContent = short(when);
      el.dataset.local = "1";
    });
    root.querySelectorAll("text[data-hour]").forEach(function (el) {
      const when = new Date(el.getAttribute("data-hour"));
      if (!isNaN(when)) el.textContent = hourFormat.format(when);
    });
    root.querySelectorAll("[data-tz]").forEach(function (el) { el.textContent = zone; });
  }

  function liveState(text) {
    document.body.dataset.liveState = text;
    document.querySelectorAll("[data-live-indicator]").forEach(function (el) {
      el.textContent = text === "connected" ? "Live" : text === "reconnecting" ? "Reconnecting…" : "";
    });
  }

  // Regions marked data-live-src re-fetch their HTML when the server says something changed.
  const pending = new Set();
  async function refresh(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      pending.add(region); // do not pull the focused control out from under the keyboard
      return;
    }
    pending.delete(region);
    try {
      const response = await fetch(region.dataset.liveSrc, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) return;
      region.innerHTML = await response.text();
      localise(region);
      region.dataset.refreshed = String(Date.now());
    } catch (error) { /* offline for a moment: the next change or timer retries */ }
  }
  function refreshAll() { document.querySelectorAll("[data-live-src]").forEach(refresh); }
  document.addEventListener("focusout", function () {
    setTimeout(function () { pending.forEach(refresh); }, 0);
  });

  function addTailRow(item) {
    const tbody = document.querySelector("#tail tbody");
    if (!tbody || tbody.querySelector('[data-cursor="' + item.cursor + '"]')) return;
    const empty = tbody.querySelector(".empty-row");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.dataset.cursor = item.cursor;
    row.className = "fresh";
    const cells = [["When", ""], ["Device", item.device_id], ["Kind", item.kind], ["Detail", item.text]];
    cells.forEach(function (cell, i) {
      const td = document.createElement("td");
      td.dataset.label = cell[0];
      if (i === 0 && item.occurred_at) {
        const t = document.createElement("time");
        t.setAttribute("datetime", item.occurred_at);
        t.textContent = item.occurred_at;
        td.appendChild(t);
      } else {
        td.textContent = cell[1]; // textContent: scanned text is never parsed as HTML
      }
      row.appendChild(td);
    });
    tbody.insertBefore(row, tbody.firstChild);
    localise(row);
    while (tbody.rows.length > 100) tbody.deleteRow(tbody.rows.length - 1);
  }

  function connect(url) {
    let last = null;
    const source = new EventSource(url, { withCredentials: true });
    source.addEventListener("open", function () { liveState("connected"); });
    source.addEventListener("error", function () { liveState("reconnecting"); });
    source.addEventListener("versions", function (event) {
      const versions = JSON.parse(event.data);
      const key = versions.fleet + ":" + versions.alerts;
      if (last !== null && key !== last) refreshAll();
      last = key;
    });
    source.addEventListener("tail", function (event) { addTailRow(JSON.parse(event.data)); });
    // Lamps age with time even when nothing changes: refresh now and then regardless.
    setInterval(refreshAll, 30000);
  }

  let lastKey = null;
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    const typing = target.closest && target.closest("input, select, textarea, [contenteditable]");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (lastKey === "g") {
      const pages = { f: "/console/", a: "/console/alerts", c: "/console/coupons" };
      if (pages[event.key]) window.location.assign(pages[event.key]);
    }
    lastKey = event.key;
  });

  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    const url = document.body.dataset.live;
    if (url && window.EventSource) connect(url);
  });
})();
