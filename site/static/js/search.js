/* Search over the prebuilt static index (search/index.json), with facets.
 * Matching (search-core.js) mirrors catalogue/sitegen/search_index.py: folded words (ä→a, ß→ss, accents
 * dropped), a query word matches every term it begins, and so does its stem (German endings cut); all words must match.
 * The query and facets live in the address (search.html?q=...&theme=...), so a search can be linked. */
(function () {
  "use strict";
  var box = document.querySelector(".search[data-index]");
  if (!box) { return; }
  var lang = document.body.getAttribute("data-lang");
  var root = box.getAttribute("data-root");
  var FACETS = ["publisher", "themes", "license", "formats", "frequency", "geometry", "timeseries"];
  var labels = JSON.parse(document.getElementById("search-labels").textContent);
  var search = window.UrbandataSearch.search;

  var publishers = {};
  function publisherTitle(name) {
    var titles = publishers[name];
    return titles ? ((lang === "en" && titles[1]) || titles[0]) : name;
  }

  function label(key, value) {
    if (key === "themes") {
      var th = labels.themes.filter(function (t) { return t.code === value; })[0];
      return th ? th.label : value;
    }
    if (key === "frequency") {
      var f = labels.frequencies.filter(function (t) { return t.code === value; })[0];
      return f ? f.label : value;
    }
    if (key === "publisher") { return publisherTitle(value); }
    if (key === "formats") { return value.toUpperCase(); }
    return value;
  }

  function fillFacets(index, results, filters) {
    FACETS.forEach(function (key) {
      var select = document.getElementById("facet-" + key);
      if (!select) { return; }
      var counts = {};
      results.forEach(function (i) {
        var v = index.docs[i][key];
        (Array.isArray(v) ? v : [typeof v === "boolean" ? String(v) : v]).forEach(function (x) {
          if (x === null || x === undefined || x === "") { return; }
          counts[x] = (counts[x] || 0) + 1;
        });
      });
      var keep = filters[key];
      select.replaceChildren();
      var all = document.createElement("option");
      all.value = "";
      all.textContent = box.getAttribute("data-all");
      select.appendChild(all);
      Object.keys(counts).sort().forEach(function (v) {
        var o = document.createElement("option");
        o.value = v;
        var text = (key === "geometry" || key === "timeseries") ? box.getAttribute(v === "true" ? "data-yes" : "data-no") : label(key, v);
        o.textContent = text + " (" + counts[v] + ")";
        select.appendChild(o);
      });
      if (keep && !counts[keep]) {
        var o = document.createElement("option");
        o.value = keep;
        o.textContent = label(key, keep) + " (0)";
        select.appendChild(o);
      }
      select.value = keep || "";
    });
  }

  function card(doc) {
    var li = document.createElement("li");
    li.className = "card";
    var h = document.createElement("h3");
    h.className = "card__title";
    var a = document.createElement("a");
    a.href = root + "datasets/" + encodeURIComponent(doc.name) + ".html";
    a.textContent = (lang === "en" && doc.title_en) || doc.title;
    h.appendChild(a);
    li.appendChild(h);
    var pub = document.createElement("p");
    pub.className = "card__publisher";
    pub.textContent = publisherTitle(doc.publisher);
    li.appendChild(pub);
    var text = (lang === "en" && doc.excerpt_en) || doc.excerpt;
    if (text) {
      var p = document.createElement("p");
      p.className = "card__desc";
      p.textContent = text;
      li.appendChild(p);
    }
    return li;
  }

  function state() {
    var params = new URLSearchParams(window.location.search), filters = {};
    FACETS.forEach(function (k) {
      var v = params.get(k === "themes" ? "theme" : k === "formats" ? "format" : k);
      if (v) { filters[k] = v; }
    });
    return { q: params.get("q") || "", filters: filters };
  }

  function address(q, filters) {
    var params = new URLSearchParams();
    if (q) { params.set("q", q); }
    Object.keys(filters).forEach(function (k) {
      params.set(k === "themes" ? "theme" : k === "formats" ? "format" : k, filters[k]);
    });
    var s = params.toString();
    return window.location.pathname + (s ? "?" + s : "");
  }

  fetch(box.getAttribute("data-index"), { credentials: "omit" }).then(function (r) { return r.json(); }).then(function (index) {
    var input = document.getElementById("search-q");
    var form = document.querySelector("form.search-form");
    var facetForm = box.querySelector("form.facets");
    var count = box.querySelector(".search-results__count");
    var list = box.querySelector(".search-results__list");
    publishers = index.publishers || {};
    var current = state();
    input.value = current.q;
    box.hidden = false;

    function run() {
      var found = search(index, current.q, current.filters);
      list.replaceChildren.apply(list, found.slice(0, 200).map(function (i) { return card(index.docs[i]); }));
      count.textContent = found.length === 1 ? box.getAttribute("data-count-one") : found.length
        ? box.getAttribute("data-count").replace("{n}", String(found.length)) : box.getAttribute("data-none");
      fillFacets(index, found, current.filters);
      box.setAttribute("data-ready", "true");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      event.stopImmediatePropagation();
      current.q = input.value;
      history.replaceState(null, "", address(current.q, current.filters));
      run();
    }, true);
    input.addEventListener("input", function () { current.q = input.value; run(); });
    facetForm.addEventListener("change", function (event) {
      var key = event.target.name;
      if (event.target.value) { current.filters[key] = event.target.value; } else { delete current.filters[key]; }
      history.replaceState(null, "", address(current.q, current.filters));
      run();
    });
    run();
  });
})();
