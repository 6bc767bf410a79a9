#!/usr/bin/env bash
# Installs Debian packages when this machine lets us (root, or sudo without a password,
# with apt). Never fails the build by itself: the tests say what is missing, and under
# CI=true a missing PC/SC stack fails them.
#   tools/system-deps.sh PACKAGE...
set -u
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: no apt-get here; install these yourself: ${missing[*]}" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: not root and no passwordless sudo; install: ${missing[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null || echo "system-deps: apt-get could not install ${missing[*]}" >&2
exit 0
