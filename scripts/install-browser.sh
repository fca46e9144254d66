#!/usr/bin/env bash
# Installs headless Chromium and chromedriver from Debian's packages (`chromium`,
# `chromium-driver`: /usr/bin/chromium, /usr/bin/chromedriver) for the browser tests
# (`cargo test browser`). Idempotent: does nothing when both are already installed.
# Non-interactive; runs apt-get directly as root, through sudo otherwise.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "install-browser: chromium and chromedriver are already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: apt-get not found; install Chromium and chromedriver by hand" >&2
  echo "install-browser: (the tests expect /usr/bin/chromium and /usr/bin/chromedriver)" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-browser: not root and sudo not found; run this script as root" >&2
  exit 1
fi

# `env` carries the setting through sudo; the lock timeout waits for another apt to finish.
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=120)
echo "install-browser: installing chromium and chromium-driver with apt-get"
${as_root[@]+"${as_root[@]}"} "${apt[@]}" update
${as_root[@]+"${as_root[@]}"} "${apt[@]}" install -y --no-install-recommends chromium chromium-driver

/usr/bin/chromium --version
/usr/bin/chromedriver --version
