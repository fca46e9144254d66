#!/usr/bin/env bash
# Installs the programs some tests drive, from Debian's packages: headless Chromium and
# chromedriver (`chromium`, `chromium-driver`: /usr/bin/chromium, /usr/bin/chromedriver) for the
# browser tests (`cargo test browser`), and nginx (`nginx-light`: /usr/sbin/nginx) for the
# reverse-proxy test (`cargo test --test faults nginx`). Idempotent: installs only what is
# missing. Non-interactive; runs apt-get directly as root, through sudo otherwise.
set -euo pipefail

missing=()
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  missing+=(chromium chromium-driver)
fi
if [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx-light)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-tools: chromium, chromedriver and nginx are already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-tools: apt-get not found; install ${missing[*]} by hand" >&2
  echo "install-test-tools: (the tests expect /usr/bin/chromium, /usr/bin/chromedriver and /usr/sbin/nginx)" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-test-tools: not root and sudo not found; run this script as root" >&2
  exit 1
fi

# `env` carries the setting through sudo; the lock timeout waits for another apt to finish.
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=120)
echo "install-test-tools: installing ${missing[*]} with apt-get"
${as_root[@]+"${as_root[@]}"} "${apt[@]}" update
${as_root[@]+"${as_root[@]}"} "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
# Debian's package starts a server on port 80 where it can; the tests run their own.
if [ -f /run/nginx.pid ]; then
  ${as_root[@]+"${as_root[@]}"} /usr/sbin/nginx -s quit || true
fi

/usr/bin/chromium --version
/usr/bin/chromedriver --version
/usr/sbin/nginx -v
