#!/usr/bin/env bash
# Downloads MovieLens 100K from the recbole 1.2.1 wheel on PyPI into .data/ml-100k (idempotent).
# GroupLens terms forbid redistribution, so the repository never contains the data.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${RECSYS_DATA_DIR:-$ROOT/.data}/ml-100k"
if [ -s "$DEST/ml-100k.inter" ] && [ -s "$DEST/ml-100k.item" ] && [ -s "$DEST/ml-100k.user" ]; then
  echo "$DEST"; exit 0
fi
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps recbole==1.2.1 -d "$TMP" >&2
mkdir -p "$DEST"
python3 - "$TMP" "$DEST" <<'PY'
import sys, zipfile, glob, os
whl = glob.glob(os.path.join(sys.argv[1], "recbole-1.2.1-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
        data = z.read("recbole/dataset_example/ml-100k/" + name)
        with open(os.path.join(sys.argv[2], name), "wb") as f:
            f.write(data)
PY
echo "$DEST"
