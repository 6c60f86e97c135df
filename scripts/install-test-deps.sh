#!/bin/sh
# What the test suite needs beyond `pip install -e ".[test]"`, from Debian's packages and npm
# (README: "Run the whole test suite"). Safe to run again: it installs only what is missing.
#   chromium                 real headless Chromium for the site's browser tests (tests/site_browser/)
#   postgresql-15-postgis-3  PostGIS for the PostgreSQL catalogue (when the server is PostgreSQL 15)
#   wrk                      the HTTP load generator of the benchmark suite
#   site/node_modules        playwright-core and axe-core (pinned in site/package.json), `npm ci`
set -eu
cd "$(dirname "$0")/.."
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if command -v pg_config >/dev/null 2>&1 || [ -d /usr/share/postgresql/15 ]; then
  [ -f /usr/share/postgresql/15/extension/postgis.control ] || missing="$missing postgresql-15-postgis-3"
fi
if [ -n "$missing" ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing from Debian:$missing"
  $sudo_cmd apt-get install -y --no-install-recommends $missing >/dev/null || {
    $sudo_cmd apt-get update >/dev/null && $sudo_cmd apt-get install -y --no-install-recommends $missing >/dev/null; }
fi
if [ ! -f site/node_modules/.package-lock.json ] || [ site/package-lock.json -nt site/node_modules/.package-lock.json ]; then
  echo "installing site/node_modules (npm ci)"
  (cd site && npm ci --no-audit --no-fund --loglevel=error)
fi
