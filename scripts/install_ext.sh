#!/usr/bin/env bash
# Builds (release) and installs the extension into the system PostgreSQL 15 directories.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export USER="${USER:-$(id -un)}"
cd "$ROOT"
cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/tmp/pg_recsys-install.log 2>&1 \
  || { tail -40 /tmp/pg_recsys-install.log; exit 1; }
echo "install: pg_recsys $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) installed (release)"
