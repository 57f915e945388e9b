#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those missing.
#   scripts/deps.sh [base] [cross] [valgrind] ...
# base:     libcriterion-dev pkg-config, and the peers the I/O tests talk
#           to: curl socat nc (netcat-openbsd) wrk python3
#                                             (make demo/test/asan/tsan/consumer)
# fuzz:     clang (libFuzzer)                 (make fuzz)
# cross:    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user   (make aarch64)
# valgrind: valgrind                          (make valgrind)
# Checks with dpkg -s; runs apt-get update only when something is missing;
# uses sudo when not root. WEFT_NO_DEPS=1 skips everything (non-Debian
# systems, or you manage packages yourself).
set -euo pipefail

[ "${WEFT_NO_DEPS:-0}" = 1 ] && exit 0

want=()
for group in "${@:-base}"; do
  case "$group" in
    # package[:command]: a package whose command is already on PATH (from
    # another package, e.g. pkgconf for pkg-config) counts as installed.
    base) want+=(libcriterion-dev pkg-config:pkg-config curl:curl socat:socat
                 netcat-openbsd:nc wrk:wrk python3:python3) ;;
    fuzz) want+=(clang:clang) ;;
    cross) want+=(gcc-aarch64-linux-gnu:aarch64-linux-gnu-gcc libc6-dev-arm64-cross
                  qemu-user:qemu-aarch64) ;;
    valgrind) want+=(valgrind:valgrind) ;;
    *) echo "deps.sh: unknown group '$group'" >&2; exit 2 ;;
  esac
done

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: not a Debian system; make sure these are installed: ${want[*]%%:*}" >&2
  exit 0
fi

missing=()
for w in "${want[@]}"; do
  p=${w%%:*} cmd=${w#*:}
  [ "$cmd" != "$w" ] && command -v "$cmd" >/dev/null 2>&1 && continue
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
