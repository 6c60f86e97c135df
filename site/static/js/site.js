/* urbandata site: small enhancements of pages that work without JavaScript.
 * - the search form searches the static index (search.html) instead of asking the API;
 * - a dataset's map (MapLibre GL's CSP build when vendored, else a plain SVG drawing) and its chart (SVG).
 * Every text goes into the page through textContent or SVG attributes, never as HTML. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1d70b8", "#d4351c", "#00703c", "#6f3c00", "#4c2c92", "#b58840", "#28a197", "#f499be"];

  function svg(tag, attrs) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    return el;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "omit" }).then(function (r) {
      if (!r.ok) { throw new Error(url + ": " + r.status); }
      return r.json();
    });
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = function () { reject(new Error(src)); };
      document.head.appendChild(s);
    });
  }

  function loadStyle(href) {
    var l = document.createElement("link");
    l.rel = "stylesheet";
    l.href = href;
    document.head.appendChild(l);
  }

  /* Search form: on a static host the index answers; without JS the form goes to the API's q. */
  document.querySelectorAll("form[data-site-search]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var q = form.querySelector("input[name=q]").value;
      window.location.href = form.getAttribute("data-site-search") + "?q=" + encodeURIComponent(q);
    });
  });

  /* ---- map ---- */
  function coordsOf(geometry, out) {
    if (!geometry) { return out; }
    var c = geometry.coordinates;
    var walk = function (x) {
      if (typeof x[0] === "number") { out.push(x); } else { x.forEach(walk); }
    };
    if (geometry.type === "GeometryCollection") {
      geometry.geometries.forEach(function (g) { coordsOf(g, out); });
    } else if (c) { walk(c); }
    return out;
  }

  function bounds(collections) {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    collections.forEach(function (fc) {
      (fc && fc.features || []).forEach(function (f) {
        coordsOf(f.geometry, []).forEach(function (p) {
          b[0] = Math.min(b[0], p[0]); b[1] = Math.min(b[1], p[1]);
          b[2] = Math.max(b[2], p[0]); b[3] = Math.max(b[3], p[1]);
        });
      });
    });
    return b;
  }

  function svgMap(box, base, data) {
    var b = bounds([data, base]);
    if (!isFinite(b[0])) { return; }
    var w = 800, h = 480, pad = 10;
    var kx = Math.cos((b[1] + b[3]) / 2 * Math.PI / 180);
    var sx = (b[2] - b[0]) * kx || 1e-6, sy = (b[3] - b[1]) || 1e-6;
    var scale = Math.min((w - 2 * pad) / sx, (h - 2 * pad) / sy);
    var project = function (p) {
      return [pad + (p[0] - b[0]) * kx * scale, h - pad - (p[1] - b[1]) * scale];
    };
    var root = svg("svg", { viewBox: "0 0 " + w + " " + h, "aria-hidden": "true", focusable: "false" });
    var draw = function (fc, fill, stroke) {
      (fc && fc.features || []).forEach(function (f) {
        var g = f.geometry;
        if (!g) { return; }
        if (g.type === "Point" || g.type === "MultiPoint") {
          coordsOf(g, []).forEach(function (p) {
            var q = project(p);
            root.appendChild(svg("circle", { cx: q[0], cy: q[1], r: 5, fill: stroke, stroke: "#fff", "stroke-width": 1.5 }));
          });
          return;
        }
        var rings = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates :
          g.type === "LineString" ? [[g.coordinates]] : g.type === "MultiLineString" ? [g.coordinates] : [];
        rings.forEach(function (poly) {
          var d = poly.map(function (ring) {
            return "M" + ring.map(function (p) { var q = project(p); return q[0].toFixed(1) + "," + q[1].toFixed(1); }).join("L");
          }).join(" ");
          var closed = g.type.indexOf("Polygon") >= 0;
          root.appendChild(svg("path", { d: d + (closed ? "Z" : ""), fill: closed ? fill : "none", stroke: stroke, "stroke-width": 1.2 }));
        });
      });
    };
    draw(base, "#e3efec", "#8fbcb6");
    draw(data, "rgba(29,112,184,.25)", "#1d70b8");
    box.replaceChildren(root);
    box.setAttribute("data-drawn", "svg");
  }

  function maplibreMap(box, base, data, tiles) {
    var b = bounds([data, base]);
    var sources = {}, layers = [{ id: "bg", type: "background", paint: { "background-color": "#f3f2f1" } }];
    if (tiles) {
      sources.tiles = { type: "raster", tiles: [tiles], tileSize: 256 };
      layers.push({ id: "tiles", type: "raster", source: "tiles" });
    }
    if (base) {
      sources.base = { type: "geojson", data: base };
      layers.push({ id: "base-fill", type: "fill", source: "base", paint: { "fill-color": "#e3efec" } });
      layers.push({ id: "base-line", type: "line", source: "base", paint: { "line-color": "#8fbcb6" } });
    }
    sources.data = { type: "geojson", data: data };
    layers.push({ id: "data-fill", type: "fill", source: "data", filter: ["==", ["geometry-type"], "Polygon"],
      paint: { "fill-color": "#1d70b8", "fill-opacity": 0.25 } });
    layers.push({ id: "data-line", type: "line", source: "data", paint: { "line-color": "#1d70b8" } });
    layers.push({ id: "data-point", type: "circle", source: "data", filter: ["==", ["geometry-type"], "Point"],
      paint: { "circle-color": "#1d70b8", "circle-radius": 5, "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } });
    var map = new window.maplibregl.Map({
      container: box, style: { version: 8, sources: sources, layers: layers },
      bounds: [[b[0], b[1]], [b[2], b[3]]], fitBoundsOptions: { padding: 20 }, attributionControl: false,
    });
    map.addControl(new window.maplibregl.NavigationControl({ showCompass: false }));
    map.on("load", function () { box.setAttribute("data-drawn", "maplibre"); });
  }

  document.querySelectorAll(".map[data-map]").forEach(function (box) {
    var vendor = document.body.getAttribute("data-site-root") + "static/vendor/maplibre-gl/";
    Promise.all([
      getJSON(box.getAttribute("data-map")),
      getJSON(box.getAttribute("data-basemap")).catch(function () { return null; }),
    ]).then(function (both) {
      var data = both[0], base = both[1], tiles = box.getAttribute("data-tiles");
      // The CSP build starts its worker from a file, not a blob: URL, so worker-src 'self' is enough.
      return loadScript(vendor + "maplibre-gl-csp.js").then(function () {
        window.maplibregl.setWorkerUrl(vendor + "maplibre-gl-csp-worker.js");
        loadStyle(vendor + "maplibre-gl.css");
        maplibreMap(box, base, data, tiles);
      }, function () { svgMap(box, base, data); });
    }).catch(function () { box.setAttribute("data-drawn", "failed"); });
  });

  /* ---- chart: one line per entity, hourly means ---- */
  function drawChart(box, doc) {
    var series = doc.series || [];
    var times = [], lo = Infinity, hi = -Infinity;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        var t = Date.parse(p[0] + ":00Z");
        times.push(t);
        if (p[1] !== null) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
      });
    });
    if (!times.length || !isFinite(lo)) { return; }
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    if (hi === lo) { hi = lo + 1; }
    var w = 800, h = 360, left = 60, right = 10, top = 10, bottom = 40;
    var x = function (t) { return left + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (w - left - right); };
    var y = function (v) { return top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom); };
    var root = svg("svg", { viewBox: "0 0 " + w + " " + h, "aria-hidden": "true", focusable: "false" });
    root.appendChild(svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: "#0b0c0c" }));
    root.appendChild(svg("line", { x1: left, y1: top, x2: left, y2: h - bottom, stroke: "#0b0c0c" }));
    [lo, (lo + hi) / 2, hi].forEach(function (v) {
      var label = svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 12 });
      label.textContent = String(Math.round(v * 100) / 100);
      root.appendChild(label);
    });
    [t0, t1].forEach(function (t, i) {
      var label = svg("text", { x: x(t), y: h - bottom + 18, "text-anchor": i ? "end" : "start", "font-size": 12 });
      label.textContent = new Date(t).toISOString().slice(0, 16).replace("T", " ");
      root.appendChild(label);
    });
    var legend = document.createElement("ul");
    legend.className = "chart-legend";
    series.forEach(function (s, i) {
      var colour = COLOURS[i % COLOURS.length];
      var d = s.points.filter(function (p) { return p[1] !== null; }).map(function (p, k) {
        return (k ? "L" : "M") + x(Date.parse(p[0] + ":00Z")).toFixed(1) + "," + y(p[1]).toFixed(1);
      }).join("");
      root.appendChild(svg("path", { d: d, fill: "none", stroke: colour, "stroke-width": 1.5 }));
      var item = document.createElement("li"), swatch = document.createElement("span");
      swatch.style.background = colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      legend.appendChild(item);
    });
    box.replaceChildren(root);
    box.after(legend);
    box.setAttribute("data-drawn", "svg");
  }

  document.querySelectorAll(".chart[data-chart]").forEach(function (box) {
    getJSON(box.getAttribute("data-chart")).then(function (doc) { drawChart(box, doc); })
      .catch(function () { box.setAttribute("data-drawn", "failed"); });
  });
})();
