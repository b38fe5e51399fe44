#!/usr/bin/env bash
# Fails when a markdown file's variable table (the lines between
# <!-- variables:begin --> and <!-- variables:end -->) differs from the one
# lshmoe_info prints from the configuration table. README.md and
# docs/configuration.md each carry one (usage: LSHMOE_INFO FILE).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 LSHMOE_INFO FILE" >&2
  exit 2
fi
info=$1
file=$2
begin='<!-- variables:begin -->'
end='<!-- variables:end -->'
if ! grep -qxF "$begin" "$file" || ! grep -qxF "$end" "$file"; then
  echo "$file has no variable table: expected the lines '$begin' and '$end' around it"
  exit 1
fi
expected=$("$info" --markdown)
actual=$(sed -n "/^$begin\$/,/^$end\$/p" "$file" | sed '1d;$d')
if [ "$expected" != "$actual" ]; then
  echo "$file: the variable table is stale; replace it with the output of: lshmoe_info --markdown"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
echo "$file: variable table matches the configuration table"
