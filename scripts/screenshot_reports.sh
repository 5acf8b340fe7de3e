#!/usr/bin/env bash
# Render every HTML page of an output folder in headless Chromium and save full-page screenshots,
# to look at the reports as users see them (not as their source reads).
#   scripts/screenshot_reports.sh OUTPUT_DIR [SHOTS_DIR]     (default SHOTS_DIR: OUTPUT_DIR/../screenshots)
# Needs chromium (Debian: apt-get install chromium).
set -euo pipefail
OUT=$(cd "${1:?usage: $0 OUTPUT_DIR [SHOTS_DIR]}" && pwd)
SHOTS=${2:-$OUT/../screenshots}
mkdir -p "$SHOTS"
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$BROWSER" ] || { echo "no chromium on PATH" >&2; exit 69; }
find "$OUT" -name '*.html' -not -path "$OUT/work/*" | sort | while read -r page; do
  name=$(echo "${page#$OUT/}" | tr '/' '_' | sed 's/\.html$/.png/')
  "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,4000 \
    --screenshot="$SHOTS/$name" "file://$page" >/dev/null 2>&1
  echo "$SHOTS/$name"
done
