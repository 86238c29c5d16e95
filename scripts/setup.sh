#!/usr/bin/env bash
# One command sets up a fresh Debian machine for development and tests:
#   - chromium: its SwiftShader Vulkan driver runs WebGPU in Node (Dawn) and it is the browser for Playwright tests;
#   - libvulkan1: the Vulkan loader Dawn opens;
#   - npm ci: the locked JavaScript dependencies (no browser download: we use Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! dpkg -s chromium libvulkan1 >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium libvulkan1 fonts-dejavu-core >/dev/null
fi
npm ci --no-audit --no-fund
