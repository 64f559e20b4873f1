#!/usr/bin/env bash
# Make the SExtractor binary available (Debian: package source-extractor).
set -euo pipefail
for exe in source-extractor sex; do
    if command -v "$exe" >/dev/null; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing SExtractor (Debian package source-extractor)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq source-extractor >/dev/null
    exit 0
fi
cat >&2 <<'MSG'
SExtractor is not installed and cannot be installed automatically
(not root, or not a Debian system). Install it with one of:
  Debian/Ubuntu:  sudo apt-get install source-extractor
  conda:          conda install -c conda-forge astromatic-source-extractor
MSG
exit 1
