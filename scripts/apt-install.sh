#!/usr/bin/env bash
# Install Debian packages for the test suite: directly as root, else through passwordless
# sudo; fails with a clear message when neither is possible or apt-get is missing.
# Usage: scripts/apt-install.sh WHO PACKAGE...   (WHO names the caller in messages)
set -euo pipefail

who="$1"
shift

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: apt-get is unavailable; install $* yourself." >&2
    exit 1
fi
if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "$who: run as root or with passwordless sudo so that $* can be installed" \
        "(apt-get install $*)." >&2
    exit 1
fi

echo "$who: installing Debian's $* package(s)" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@" >&2
