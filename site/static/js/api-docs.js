/* The API documentation page: the OpenAPI document rendered by Swagger UI when it is vendored
 * (static/vendor/swagger-ui/), else listed by this script (every path, method, summary and parameter). */
(function () {
  "use strict";
  var box = document.querySelector(".api-docs[data-spec]");
  if (!box) { return; }
  var spec = box.getAttribute("data-spec"), vendor = box.getAttribute("data-vendor") + "swagger-ui/";
  box.textContent = box.getAttribute("data-loading");

  function el(tag, text) { var e = document.createElement(tag); if (text !== undefined) { e.textContent = text; } return e; }

  function list(doc) {
    var out = [];
    Object.keys(doc.paths || {}).sort().forEach(function (path) {
      var ops = doc.paths[path];
      Object.keys(ops).forEach(function (method) {
        var op = ops[method];
        var section = el("section");
        var h = el("h2");
        var code = el("code", method.toUpperCase() + " " + path);
        h.appendChild(code);
        section.appendChild(h);
        if (op.summary) { section.appendChild(el("p", op.summary)); }
        if (op.description && op.description !== op.summary) { section.appendChild(el("p", op.description)); }
        var params = (op.parameters || []).filter(function (p) { return p && p.name; });
        if (params.length) {
          var ul = el("ul");
          params.forEach(function (p) {
            var li = el("li");
            li.appendChild(el("code", p.name));
            li.appendChild(document.createTextNode(" (" + p["in"] + (p.required ? ", required" : "") + ")" +
              (p.description ? ": " + p.description : "")));
            ul.appendChild(li);
          });
          section.appendChild(ul);
        }
        out.push(section);
      });
    });
    box.replaceChildren.apply(box, out);
    box.setAttribute("data-drawn", "list");
  }

  var script = document.createElement("script");
  script.src = vendor + "swagger-ui-bundle.js";
  script.onload = function () {
    var css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = vendor + "swagger-ui.css";
    document.head.appendChild(css);
    box.replaceChildren();
    window.SwaggerUIBundle({ url: spec, domNode: box });
    box.setAttribute("data-drawn", "swagger-ui");
  };
  script.onerror = function () {
    fetch(spec, { credentials: "omit" }).then(function (r) { return r.json(); }).then(list);
  };
  document.head.appendChild(script);
})();
