#!/usr/bin/env bash
# Usage: test/portable_check.sh BINARY SYMBOL...
# Fails if BINARY imports any SYMBOL (dynamic symbols it needs from shared
# libraries, e.g. splice from libc): the portable build (make WSP_PORTABLE=1)
# must not use a Linux-only call. Also fails if the symbol list cannot be
# read, or if it does not hold the calls every build makes (so an nm that
# prints nothing cannot pass the check).
set -euo pipefail
bin=$1
shift
[ -x "$bin" ] || { echo "portable_check: no executable $bin" >&2; exit 1; }
imports=$(nm -D --undefined-only "$bin" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
for must in socket connect read write; do
  grep -qx "$must" <<<"$imports" || { echo "portable_check: $bin: cannot read its imports (no $must)" >&2; exit 1; }
done
bad=()
for s in "$@"; do
  grep -qx "$s" <<<"$imports" && bad+=("$s")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "portable_check: $bin imports Linux-only: ${bad[*]}" >&2
  exit 1
fi
echo "portable_check: $bin imports none of: $*"
