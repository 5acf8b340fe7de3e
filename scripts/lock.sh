#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml: every Python package with its exact version and
# sha256 hashes, for Linux x86_64 and Python 3.11 (the container's platform and this project's).
#   requirements/runtime.lock   what the app needs (the container installs this)
#   requirements/test.lock      the same pins plus the test tools (`make setup` installs this)
# Versions already in the lock files are kept; pass --upgrade to move to the newest allowed ones.
# Uses uv (installed into a throwaway venv when it is not on PATH). Needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m venv "$tmp/venv" && "$tmp/venv/bin/pip" install -q uv && UV="$tmp/venv/bin/uv"
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --no-header --annotation-style line --quiet "$@")
"$UV" pip compile pyproject.toml "${common[@]}" -o requirements/runtime.lock
"$UV" pip compile pyproject.toml --extra test -c requirements/runtime.lock "${common[@]}" -o requirements/test.lock
echo "requirements/runtime.lock: $(grep -c '^[a-zA-Z]' requirements/runtime.lock) packages;" \
     "requirements/test.lock: $(grep -c '^[a-zA-Z]' requirements/test.lock) packages"
