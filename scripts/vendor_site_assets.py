"""Copy the catalogue site's JavaScript and CSS from npm packages into ``site/static/vendor/``.

    python scripts/vendor_site_assets.py          # npm ci in site/ when needed, then copy and bundle

The site never loads anything from another origin: MapLibre (maps), uPlot (charts),
DuckDB-WASM 1.28 (the in-browser SQL console — the last release with Parquet built in, see
site/static/vendor/README.md — bundled with apache-arrow by esbuild into one
module, duckdb-browser.mjs) and Swagger UI (the API page) are copied from the exact versions pinned in
``site/package.json``/``package-lock.json``. The result is committed, so installing the hub
needs neither Node.js nor npm; run this again only to change a version. Each library's
licence file (or, where it ships none, its package.json naming the licence) is copied beside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parents[1] / "site"
MODULES = SITE / "node_modules"
VENDOR = SITE / "static" / "vendor"

# target folder -> [(file in node_modules, name in the target)]
COPIES: dict[str, list[tuple[str, str]]] = {
    # MapLibre 5: the last major with a classic-script build; the -csp build starts its worker from
    # its own file instead of a blob: URL, so the pages' CSP needs no blob: for it.
    "maplibre-gl": [("maplibre-gl/dist/maplibre-gl.js", "maplibre-gl.js"),
                    ("maplibre-gl/dist/maplibre-gl-csp.js", "maplibre-gl-csp.js"),
                    ("maplibre-gl/dist/maplibre-gl-csp-worker.js", "maplibre-gl-csp-worker.js"),
                    ("maplibre-gl/dist/maplibre-gl.css", "maplibre-gl.css"),
                    ("maplibre-gl/LICENSE.txt", "LICENSE.txt")],
    "uplot": [("uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"), ("uplot/dist/uPlot.min.css", "uPlot.min.css"),
              ("uplot/LICENSE", "LICENSE")],
    "duckdb": [("@duckdb/duckdb-wasm/dist/duckdb-browser-eh.worker.js", "duckdb-browser-eh.worker.js"),
               ("@duckdb/duckdb-wasm/dist/duckdb-eh.wasm", "duckdb-eh.wasm"),
               # MIT; the package ships no licence file, its package.json names the licence
               ("@duckdb/duckdb-wasm/package.json", "package.json")],
    "swagger-ui": [("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-bundle.js"),
                   ("swagger-ui-dist/swagger-ui.css", "swagger-ui.css"),
                   ("swagger-ui-dist/LICENSE", "LICENSE")],
}


def npm_ci() -> None:
    """Install the pinned packages (``npm ci``) unless they are there."""
    if not (MODULES / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SITE, check=True)


def vendor() -> list[Path]:
    """Copy every file of COPIES and bundle DuckDB-WASM; the written files."""
    written = []
    for folder, files in COPIES.items():
        target = VENDOR / folder
        target.mkdir(parents=True, exist_ok=True)
        for source, name in files:
            path = MODULES / source
            if not path.exists():
                raise SystemExit(f"{path} is missing: run `npm ci` in {SITE} (package.json pins the versions).")
            shutil.copyfile(path, target / name)
            written.append(target / name)
    bundle = VENDOR / "duckdb" / "duckdb-browser.mjs"
    subprocess.run([str(MODULES / ".bin" / "esbuild"), str(SITE / "vendor-src" / "duckdb.mjs"), "--bundle",
                    "--format=esm", "--minify", "--legal-comments=none", f"--outfile={bundle}"],
                   cwd=SITE, check=True)
    written.append(bundle)
    return written


def main() -> None:
    npm_ci()
    for path in vendor():
        print(f"{path.relative_to(SITE.parent)}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    sys.exit(main())
