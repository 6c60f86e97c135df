// The part of DuckDB-WASM the SQL console uses, bundled with apache-arrow into one module
// (scripts/vendor_site_assets.py runs esbuild on this file; the result is site/static/vendor/duckdb/duckdb.mjs).
export { AsyncDuckDB, ConsoleLogger, LogLevel } from "@duckdb/duckdb-wasm";
