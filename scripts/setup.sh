#!/usr/bin/env bash
# Idempotent machine set-up for pg_recsys: apt packages, cargo-pgrx 0.18.1, pgrx init.
# Safe to run repeatedly; each step is skipped when already done.
set -euo pipefail
export USER="${USER:-$(id -un)}"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# pgbouncer: bench/memory.py runs its own for the pooled bursts (the packaged service is not used).
APT_PKGS=(postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-cron chromium chromium-driver fonts-liberation pgbouncer libclang-dev pkg-config libssl-dev sudo unzip)

need_apt=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  echo "setup: installing apt packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
  echo "setup: installing cargo-pgrx 0.18.1 (takes ~6 minutes once)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi

if ! grep -qs "pg15 = \"$PG_CONFIG\"" "$HOME/.pgrx/config.toml"; then
  echo "setup: cargo pgrx init --pg15"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
# pgvector (the serving alternative users would pick): built from the peer tarball beside the
# repository (../shared/peers), for the side-by-side benchmark and the vector import test.
PGVECTOR_TGZ="$(cd "$(dirname "$0")/.." && pwd)/../shared/peers/pgvector-0.8.6.tar.gz"
if [ ! -f "$($PG_CONFIG --sharedir)/extension/vector.control" ] && [ -f "$PGVECTOR_TGZ" ]; then
  echo "setup: building pgvector 0.8.6 from $PGVECTOR_TGZ"
  tmp="$(mktemp -d)"
  tar -xzf "$PGVECTOR_TGZ" -C "$tmp"
  (cd "$tmp"/pgvector-* && make -s PG_CONFIG="$PG_CONFIG" >/dev/null && make -s PG_CONFIG="$PG_CONFIG" install >/dev/null)
  rm -rf "$tmp"
fi
echo "setup: ok"
