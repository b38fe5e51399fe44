#!/usr/bin/env bash
# The library's layers depend one way: common -> codec -> transport ->
# exchange -> api | interpose -> tools, plugin. A file may include headers of
# its own layer and of the layers below it, never above (nor a sibling:
# api and interpose stand side by side). Run from anywhere; exits 1 naming
# every include that goes the wrong way.
set -euo pipefail
cd "$(dirname "$0")/.."

rank_of() {
  case $1 in
    common) echo 0 ;;
    codec) echo 1 ;;
    transport) echo 2 ;;
    exchange) echo 3 ;;
    api | interpose) echo 4 ;;
    tools) echo 5 ;;
    plugin) echo 6 ;;
    *) echo -1 ;;
  esac
}

bad=0
while IFS= read -r file; do
  case $file in
    src/*) layer=$(echo "$file" | cut -d/ -f2) ;;
    plugin/*) layer=plugin ;;
    *) continue ;;
  esac
  mine=$(rank_of "$layer")
  ((mine >= 0)) || continue
  while IFS= read -r line; do
    target=$(echo "$line" | sed -E 's/^[^"]*"([a-z_]+)\/.*$/\1/')
    theirs=$(rank_of "$target")
    ((theirs >= 0)) || continue
    if ((theirs > mine)) || { ((theirs == mine)) && [ "$target" != "$layer" ]; }; then
      echo "layers: $file ($layer) includes $target: $line"
      bad=1
    fi
  done < <(grep -E '^#include "[a-z_]+/' "$file" || true)
done < <(find src plugin -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cu' \) | sort)
if ((bad)); then
  exit 1
fi
echo "layers: every include goes down"
