#!/bin/sh
# One-time set-up, run by `npm start`, `npm test` and `npm run image` before anything else:
# Debian packages (installed when root, otherwise the exact command is printed) and npm packages (npm ci when
# node_modules is missing or older than package-lock.json). Idempotent and quick when all is in place.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential bc flex bison libelf-dev libssl-dev cpio zstd xz-utils linux-source-6.1 \
qemu-system-x86 busybox-static util-linux iproute2 openssl python3 \
fdisk e2fsprogs dosfstools mtools systemd-boot-efi ovmf \
docker-registry umoci skopeo apache2-utils crun nftables erofs-utils squashfs-tools sbsigntool faketime"

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js >= 20 is required on the build host (found: $(node --version 2>/dev/null || echo none))." >&2
  echo "setup: install Node 20 or newer (the image ships its own pinned Node 24)." >&2
  exit 1
fi

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || { echo "setup: apt-get update failed: is a Debian mirror reachable?" >&2; exit 1; }
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/tmp/aurae-apt.log 2>&1 || {
      tail -20 /tmp/aurae-apt.log >&2
      echo "setup: apt-get install failed (log: /tmp/aurae-apt.log)" >&2
      exit 1
    }
  else
    echo "setup: missing Debian packages:$missing" >&2
    echo "setup: run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages (npm ci; better-sqlite3 compiles from source, about a minute)"
  npm ci --no-audit --no-fund --loglevel=error || {
    echo "setup: npm ci failed: is the npm registry reachable (npm ping)? Are python3, make and g++ installed?" >&2
    exit 1
  }
fi
