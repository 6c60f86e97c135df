/* The search over the site's static index, shared by search.js and the tests (run in Node):
 * it mirrors catalogue/sitegen/search_index.py line for line (folding, stems, prefix matching, facets, order). */
(function (root) {
  "use strict";
  var ENDINGS = ["ern", "en", "er", "es", "e", "n", "s"];
  var MIN_STEM = 4;

  function fold(text) {
    return text.toLowerCase().replace(/ä/g, "a").replace(/ö/g, "o").replace(/ü/g, "u").replace(/ß/g, "ss")
      .replace(/ẞ/g, "ss").normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
  }
  function words(text) { return fold(text).match(/[0-9a-z]+/g) || []; }
  function stem(word) {
    for (var i = 0; i < ENDINGS.length; i++) {
      var e = ENDINGS[i];
      if (word.slice(-e.length) === e && word.length - e.length >= MIN_STEM) { return word.slice(0, -e.length); }
    }
    return word;
  }
  function matching(index, word) {
    var terms = index.terms, found = new Set();
    [word, stem(word)].forEach(function (prefix) {
      var lo = 0, hi = terms.length;
      while (lo < hi) { var mid = (lo + hi) >> 1; if (terms[mid] < prefix) { lo = mid + 1; } else { hi = mid; } }
      for (; lo < terms.length && terms[lo].indexOf(prefix) === 0; lo++) {
        index.postings[lo].forEach(function (i) { found.add(i); });
      }
    });
    return found;
  }
  function has(held, value) {
    if (Array.isArray(held)) { return held.indexOf(value) >= 0; }
    if (typeof held === "boolean") { return value === (held ? "true" : "false"); }
    return held === value;
  }
  function search(index, query, filters) {
    var hits = null, qw = words(query);
    qw.forEach(function (w) {
      var found = matching(index, w);
      hits = hits === null ? found : new Set(Array.from(hits).filter(function (i) { return found.has(i); }));
    });
    var chosen = hits === null ? index.docs.map(function (_, i) { return i; }) : Array.from(hits);
    Object.keys(filters).forEach(function (k) {
      chosen = chosen.filter(function (i) { return has(index.docs[i][k], filters[k]); });
    });
    var score = function (i) {
      var held = index.title_terms[i];
      return qw.filter(function (w) {
        return held.some(function (t) { return t.indexOf(w) === 0 || t.indexOf(stem(w)) === 0; });
      }).length;
    };
    return chosen.sort(function (a, b) { return score(b) - score(a) || a - b; });
  }

  root.UrbandataSearch = { fold: fold, words: words, stem: stem, search: search };
})(typeof window !== "undefined" ? window : globalThis);
