/* In-browser SQL over the current version with DuckDB-WASM (vendored from npm, no CDN).
 * DuckDB-WASM reads Parquet only through an extension it would fetch from extensions.duckdb.org, and no
 * request may leave the site: the build writes the version's rows as an Arrow IPC stream beside its
 * Parquet file, fetched from the site's own host and taken in as the table "data". A static host with
 * no API server still answers. Results are shown as a table (cells as text) and offered as CSV. */
(function () {
  "use strict";
  var form = document.querySelector("form.sql-console");
  if (!form) { return; }
  var status = form.querySelector(".sql-console__status");
  var result = form.querySelector(".sql-console__result");
  // Absolute: the worker resolves a relative URL (the .wasm) against its own address, not the page's.
  var vendor = new URL(form.getAttribute("data-vendor"), window.location.href).href;
  var arrow = form.getAttribute("data-arrow");
  var ready = null;

  function say(text) { status.textContent = text; }

  function open() {
    if (ready) { return ready; }
    say(form.getAttribute("data-loading"));
    ready = import(vendor + "duckdb-browser.mjs").then(function (duckdb) {
      var worker = new Worker(vendor + "duckdb-browser-eh.worker.js");
      var db = new duckdb.AsyncDuckDB(new duckdb.VoidLogger(), worker);
      var rows = fetch(arrow, { credentials: "omit" }).then(function (r) {
        if (!r.ok) { throw new Error(arrow + ": " + r.status); }
        return r.arrayBuffer();
      });
      return db.instantiate(new URL(vendor + "duckdb-eh.wasm", window.location.href).href).then(function () {
        return db.connect();
      }).then(function (conn) {
        // Nothing is ever fetched from DuckDB's extension repository.
        return conn.query("SET autoinstall_known_extensions = false").then(function () {
          return conn.query("SET autoload_known_extensions = false");
        }).then(function () { return rows; }).then(function (buffer) {
          return conn.insertArrowFromIPCStream(new Uint8Array(buffer), { name: form.getAttribute("data-table") });
        }).then(function () { return conn; });
      });
    });
    ready.catch(function () { ready = null; });
    return ready;
  }

  function text(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "bigint") { return value.toString(); }
    if (value instanceof Date) { return value.toISOString(); }
    if (typeof value === "object") {
      try { return JSON.stringify(value, function (_, v) { return typeof v === "bigint" ? v.toString() : v; }); }
      catch (e) { return String(value); }
    }
    return String(value);
  }

  function csvCell(s) { return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }

  function show(table) {
    var names = table.schema.fields.map(function (f) { return f.name; });
    var rows = table.toArray().map(function (row) {
      var obj = row.toJSON ? row.toJSON() : row;
      return names.map(function (n) { return text(obj[n]); });
    });
    var t = document.createElement("table"), head = document.createElement("thead"), tr = document.createElement("tr");
    names.forEach(function (n) { var th = document.createElement("th"); th.scope = "col"; th.textContent = n; tr.appendChild(th); });
    head.appendChild(tr);
    t.appendChild(head);
    var body = document.createElement("tbody");
    rows.forEach(function (r) {
      var row = document.createElement("tr");
      r.forEach(function (c) { var td = document.createElement("td"); td.textContent = c; row.appendChild(td); });
      body.appendChild(row);
    });
    t.appendChild(body);
    var csv = [names].concat(rows).map(function (r) { return r.map(csvCell).join(","); }).join("\r\n") + "\r\n";
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    link.download = "query.csv";
    link.textContent = form.getAttribute("data-csv");
    result.replaceChildren(t);
    var p = document.createElement("p");
    p.appendChild(link);
    result.appendChild(p);
    say(form.getAttribute("data-rows").replace("{n}", String(rows.length)));
    form.setAttribute("data-answered", String(rows.length));
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var sql = form.querySelector("textarea").value;
    open().then(function (conn) {
      say(form.getAttribute("data-running"));
      return conn.query(sql);
    }).then(show).catch(function (error) {
      say(form.getAttribute("data-error") + ": " + (error && error.message ? error.message : String(error)));
      form.setAttribute("data-answered", "error");
    });
  });
  say("");
})();
