// DuckDB-WASM's browser API, bundled with apache-arrow into one module so the page needs no import map
// (scripts/vendor_site_assets.py runs esbuild on this file; the result is site/static/vendor/duckdb/duckdb-browser.mjs).
export * from "@duckdb/duckdb-wasm";
