#!/usr/bin/env bash
# Make sure a Chromium for the browser tests (tests/e2e) is installed; print its path.
# Playwright's own browser download cannot reach its CDN here, so the tests drive Debian's
# `chromium` package: installed directly as root, else through passwordless sudo.
set -euo pipefail

find_chromium() {
    local candidate
    for candidate in "${OLLM_TEST_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if find_chromium; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium not found and apt-get is unavailable;" \
        "install Chromium, or set OLLM_TEST_CHROMIUM to its executable." >&2
    exit 1
fi
if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "ensure-chromium: chromium not found; run as root or with passwordless sudo so the" \
        "chromium package can be installed (apt-get install chromium)," \
        "or set OLLM_TEST_CHROMIUM to an existing Chromium." >&2
    exit 1
fi

echo "ensure-chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2

if ! find_chromium; then
    echo "ensure-chromium: chromium was installed but is still not found" >&2
    exit 1
fi
