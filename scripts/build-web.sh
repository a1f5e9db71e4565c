#!/usr/bin/env bash
# Build the web UI (web/) into src/ollm/web/dist, which the Python package ships.
# Installs npm packages when node_modules is missing or older than package-lock.json, and
# skips the build when dist/index.html is newer than every source file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
web="$root/web"
page="$root/src/ollm/web/dist/index.html"
cd "$web"

if ! command -v npm >/dev/null 2>&1; then
    echo "build-web: npm is not installed (node 20.19+ is needed to build the web UI)" >&2
    exit 1
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
    echo "build-web: installing npm packages"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    touch node_modules
fi

if [[ -f "$page" ]] && [[ -z "$(find . -path ./node_modules -prune -o -type f -newer "$page" -print -quit)" ]]; then
    exit 0  # up to date
fi

echo "build-web: building the web UI"
npm run --silent build -- --logLevel warn
