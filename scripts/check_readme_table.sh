#!/usr/bin/env bash
# Fails when README.md's variable table differs from the one lshmoe_info
# prints from the configuration table (usage: LSHMOE_INFO README.md).
set -euo pipefail
info=$1
readme=$2
expected=$("$info" --markdown)
actual=$(sed -n '/<!-- variables:begin -->/,/<!-- variables:end -->/p' "$readme" | sed '1d;$d')
if [ "$expected" != "$actual" ]; then
  echo "README.md's variable table is stale; replace it with the output of: lshmoe_info --markdown"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
echo "README.md variable table matches the configuration table"
