#!/usr/bin/env bash
# One command sets up a fresh Debian machine for development and tests:
#   - chromium: its SwiftShader Vulkan driver runs WebGPU in Node (Dawn) and it is the browser for Playwright tests;
#   - libvulkan1: the Vulkan loader Dawn opens;
#   - fonts-dejavu-core: a font, so pages render text headless;
#   - npm ci: the locked JavaScript dependencies (no browser download: we use Debian's chromium).
#   - the q3n CLI bundle (dist/node/q3n.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(chromium libvulkan1 fonts-dejavu-core)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
npm ci --no-audit --no-fund
# The q3n command line (bin/q3n.mjs runs this bundle).
npm run --silent build:node
