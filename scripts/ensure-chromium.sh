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

"$(dirname "$0")/apt-install.sh" ensure-chromium chromium fonts-dejavu-core || {
    echo "ensure-chromium: or set OLLM_TEST_CHROMIUM to an existing Chromium." >&2
    exit 1
}

if ! find_chromium; then
    echo "ensure-chromium: chromium was installed but is still not found" >&2
    exit 1
fi
