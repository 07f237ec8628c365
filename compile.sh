#!/usr/bin/env bash
# Build the single executable: dist/fulcrum (Bun by default).
#   ./compile.sh                          bun build --compile for this machine
#   ./compile.sh --target bun-linux-arm64 cross-compile (any target `bun build --compile` knows)
#   ./compile.sh --outfile /tmp/fulcrum   another output path
#   ./compile.sh --runtime deno           deno compile (needs Deno's denort base binary: set
#                                         DENORT_BIN to a local copy, or network access to download it)
set -euo pipefail
cd "$(dirname "$0")"

runtime=bun
target=""
outfile=dist/fulcrum
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime=${2:?--runtime needs bun or deno}; shift 2 ;;
    --target) target=${2:?--target needs a value}; shift 2 ;;
    --outfile) outfile=${2:?--outfile needs a path}; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "compile.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# FULCRUM_COMMIT overrides (a Docker build has no .git).
commit=${FULCRUM_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
if [ -z "${FULCRUM_COMMIT:-}" ] && [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
mkdir -p "$(dirname "$outfile")"

case "$runtime" in
  bun)
    bun=./node_modules/.bin/bun
    [ -x "$bun" ] || bun=$(command -v bun) || { echo "compile.sh: bun not found; run npm install first" >&2; exit 1; }
    # Bytecode halves start-up; it needs ESM output because main.ts uses top-level await.
    # --splitting keeps each dynamic import() a chunk of its own: without it the bundle hoists the
    # node: built-ins those modules import (http, https, tls, dns, zlib...) to the top, and every
    # start evaluated them (~8 ms of CPU).
    build() {
      "$bun" build main.ts --compile --bytecode --format=esm --minify --splitting \
        --define "FULCRUM_COMMIT=\"$commit\"" \
        ${target:+--target="$target"} \
        "$@" --outfile "$outfile"
    }
    build
    # Second pass (for this machine only: the first binary has to run here): lay out the bytecode
    # in the order a start and a few proxied requests run it (bench/bytecode-order.ts), so fewer
    # pages of the executable are read in: ~3 MiB less RSS. FULCRUM_BYTECODE_ORDER=0 skips it.
    if [ -z "$target" ] && [ "${FULCRUM_BYTECODE_ORDER:-1}" != 0 ]; then
      order=$(mktemp "${TMPDIR:-/tmp}/fulcrum-order.XXXXXX")
      if "$bun" bench/bytecode-order.ts "$outfile" "$order"; then
        build --bytecode-order="$order"
      else
        echo "compile.sh: recording the bytecode order failed; keeping the build without it" >&2
      fi
      rm -f "$order"
    fi
    ;;
  deno)
    deno=./node_modules/.bin/deno
    [ -x "$deno" ] || deno=$(command -v deno) || { echo "compile.sh: deno not found; run npm install first" >&2; exit 1; }
    if [ -z "${DENORT_BIN:-}" ]; then
      echo "compile.sh: deno compile downloads its denort base binary from Deno's release server." >&2
      echo "            Trying for at most 60 s; set DENORT_BIN=/path/to/denort to build offline." >&2
    fi
    # The commit cannot be stamped with deno compile (no --define); `version` says "source".
    if ! timeout 60 "$deno" compile --allow-read --allow-net --allow-env --allow-sys=hostname --unstable-no-legacy-abort \
      ${target:+--target "$target"} --output "$outfile" main.ts </dev/null; then
      echo "compile.sh: deno compile failed (most likely the denort download is not possible here)." >&2
      echo "            Use the Bun build (./compile.sh), or run from source: deno task start." >&2
      exit 1
    fi
    ;;
  *) echo "compile.sh: --runtime must be bun or deno, got $runtime" >&2; exit 2 ;;
esac

size=$(du -h "$outfile" | cut -f1)
echo "built $outfile ($size, commit $commit)"
