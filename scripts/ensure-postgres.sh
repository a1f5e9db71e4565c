#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl) are installed; print their directory.
# The store's tests start a throwaway server from them (tests/postgres.py). When they are
# missing, install Debian's `postgresql` package: directly as root, else through sudo.
set -euo pipefail

find_bindir() {
    local dir
    if [[ -n "${OLLM_TEST_PG_BINDIR:-}" && -x "$OLLM_TEST_PG_BINDIR/initdb" ]]; then
        echo "$OLLM_TEST_PG_BINDIR"
        return 0
    fi
    # Debian keeps the server binaries out of PATH, one directory per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

if find_bindir; then
    exit 0
fi

"$(dirname "$0")/apt-install.sh" ensure-postgres postgresql || {
    echo "ensure-postgres: or set OLLM_TEST_PG_BINDIR to an existing PostgreSQL bin dir." >&2
    exit 1
}

if ! find_bindir; then
    echo "ensure-postgres: postgresql was installed but initdb is still not found" >&2
    exit 1
fi
