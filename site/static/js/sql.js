/* In-browser SQL over the current version with DuckDB-WASM (vendored from npm, no CDN: the 1.28 release,
 * whose build has the Parquet reader inside — later ones fetch it from extensions.duckdb.org, and no request
 * may leave the site). DuckDB reads the version's Parquet copy from the site's own host by HTTP Range
 * requests (only the row groups and columns a query needs), so a static host with no API server still
 * answers. Results are shown as a table (cells as text) and offered as CSV. */
(function () {
  "use strict";
  var form = document.querySelector("form.sql-console");
  if (!form) { return; }
  var status = form.querySelector(".sql-console__status");
  var result = form.querySelector(".sql-console__result");
  // Absolute: the worker resolves a relative URL (the .wasm) against its own address, not the page's.
  var vendor = new URL(form.getAttribute("data-vendor"), window.location.href).href;
  var parquet = new URL(form.getAttribute("data-parquet"), window.location.href).href;
  var ready = null;

  function say(text) { status.textContent = text; }

  function open() {
    if (ready) { return ready; }
    say(form.getAttribute("data-loading"));
    ready = import(vendor + "duckdb-browser.mjs").then(function (duckdb) {
      var worker = new Worker(vendor + "duckdb-browser-eh.worker.js");
      var db = new duckdb.AsyncDuckDB(new duckdb.VoidLogger(), worker);
      return db.instantiate(new URL(vendor + "duckdb-eh.wasm", window.location.href).href).then(function () {
        return db.registerFileURL("data.parquet", parquet, duckdb.DuckDBDataProtocol.HTTP, false);
      }).then(function () { return db.connect(); }).then(function (conn) {
        return conn.query("CREATE VIEW " + form.getAttribute("data-table") + " AS SELECT * FROM read_parquet('data.parquet')")
          .then(function () { return conn; });
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
