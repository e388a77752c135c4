// The dashboard's only script: the live feed (Server-Sent Events) and the ECR page's live states.
// No library; rows are built with textContent so nothing from the server is ever parsed as HTML.
"use strict";

(function () {
  const MAX_ROWS = 100;

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function upsert(tbody, id, build) {
    const old = tbody.querySelector('tr[data-id="' + id + '"]');
    const row = build();
    row.dataset.id = String(id);
    if (old) {
      old.replaceWith(row);
    } else {
      tbody.insertBefore(row, tbody.firstChild);
      while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
    }
    row.classList.add("fresh");
  }

  function transactionRow(tx) {
    const row = document.createElement("tr");
    row.className = tx.rc === "00" ? "approved" : "declined";
    cell(row, tx.created);
    cell(row, tx.tid);
    cell(row, tx.kind + " " + tx.mti);
    cell(row, tx.pan_masked, "pan");
    cell(row, tx.entry_mode);
    cell(row, tx.amount, "num");
    const charged = cell(row, tx.charged, "num charged");
    if (tx.discount) {
      const discount = document.createElement("small");
      discount.textContent = "(\u2212" + tx.discount + ")";
      charged.append(" ", discount);
    }
    cell(row, tx.rc + " " + tx.rc_text);
    cell(row, tx.reason);
    cell(row, tx.latency_ms, "num");
    cell(row, tx.atc, "num");
    const link = document.createElement("a");
    link.href = tx.url;
    link.textContent = "details";
    cell(row, "").appendChild(link);
    return row;
  }

  function ecrRow(ecr) {
    const row = document.createElement("tr");
    row.className = "ecr-" + ecr.state;
    cell(row, ecr.id);
    cell(row, ecr.tid);
    cell(row, ecr.amount, "num");
    cell(row, ecr.state, "state");
    cell(row, ecr.rc);
    cell(row, ecr.text);
    cell(row, ecr.stan);
    cell(row, ecr.created);
    cell(row, ecr.updated);
    return row;
  }

  function activityItem(list, message) {
    const item = document.createElement("li");
    item.dataset.id = String(message.id);
    const time = document.createElement("time");
    time.textContent = message.created;
    const kind = document.createElement("b");
    kind.textContent = message.kind;
    item.append(time, " ", kind, " ", message.text || "");
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_ROWS) list.removeChild(list.lastChild);
  }

  // The overview's figures and charts follow the feed: after a sale (at most one refresh a second) and every
  // half minute, so the window slides. Figures go in with textContent; a chart is parsed as an SVG document
  // (never as HTML) and its nodes imported.
  const REFRESH_AFTER_MS = 1000;
  const SLIDE_MS = 30000;
  let refreshTimer = null;

  function refreshOverview() {
    refreshTimer = null;
    const section = document.getElementById("overview");
    if (!section) return;
    fetch(section.dataset.overview, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then((answer) => answer.ok ? answer.json() : null)
      .then((data) => {
        if (!data) return;
        Object.entries(data.kpis).forEach(([id, text]) => {
          const element = document.getElementById(id);
          if (element) element.textContent = text;
        });
        Object.entries(data.charts).forEach(([name, svg]) => {
          const box = document.getElementById("chart-" + name);
          const parsed = new DOMParser().parseFromString(svg, "image/svg+xml").documentElement;
          if (box && parsed.nodeName === "svg") box.replaceChildren(document.importNode(parsed, true));
        });
        section.dataset.refreshed = String(Date.now());
      })
      .catch(() => {});  // the next sale or the next half minute tries again
  }

  function scheduleRefresh() {
    if (refreshTimer === null && document.getElementById("overview")) {
      refreshTimer = window.setTimeout(refreshOverview, REFRESH_AFTER_MS);
    }
  }

  const BUSY_RETRY_MS = 5000;  // the Retry-After of its 503 (acquirer_stub/serving.py); EventSource cannot read it

  // The browser reconnects by itself when a stream ends (with Last-Event-ID), but gives up when the server
  // refuses it (503: the server runs only a few streams at once); then we try again after a while, from the
  // last event seen, so nothing is missed.
  function connect(table, after) {
    const status = document.getElementById("feed-status");
    const feedRows = document.getElementById("feed-rows");
    const ecrRows = document.getElementById("ecr-rows");
    const activity = document.getElementById("activity");
    let last = after;
    const source = new EventSource(table.dataset.feed + "?after=" + encodeURIComponent(after));
    const closeOnLeave = () => source.close();
    window.addEventListener("pagehide", closeOnLeave);
    source.onopen = function () {
      if (status) { status.textContent = "live"; status.className = "feed-status live"; }
    };
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) {
        if (status) { status.textContent = "reconnecting…"; status.className = "feed-status"; }
        return;
      }
      if (status) { status.textContent = "server busy, retrying…"; status.className = "feed-status"; }
      window.removeEventListener("pagehide", closeOnLeave);
      window.setTimeout(() => connect(table, last), BUSY_RETRY_MS);
    };
    source.onmessage = function (event) {
      if (event.lastEventId) last = event.lastEventId;
      const message = JSON.parse(event.data);
      if (feedRows && message.transaction) {
        upsert(feedRows, message.transaction.id, () => transactionRow(message.transaction));
        scheduleRefresh();
      }
      if (ecrRows && message.ecr) upsert(ecrRows, message.ecr.id, () => ecrRow(message.ecr));
      if (activity) activityItem(activity, message);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => select.form.submit());
    });
    const table = document.querySelector("table[data-feed]");
    // After the last event the page was rendered with; on reconnects the browser sends Last-Event-ID itself.
    if (table && window.EventSource) connect(table, table.dataset.after || "");
    if (document.getElementById("overview")) window.setInterval(refreshOverview, SLIDE_MS);
  });
})();
