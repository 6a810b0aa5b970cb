#!/usr/bin/env bash
# Install asr into ./.venv on Debian/Ubuntu.
#   tools/install.sh          the package and what `transcribe` needs (ffmpeg for uncommon formats)
#   tools/install.sh dev      + test and recipe dependencies: TTS engines (GnuSpeech from npm into ~/.cache/asr/gnuspeech),
#                             text corpora, KenLM build deps, pyworld, onnx + onnxruntime, pytest
# The MBROLA databases (us1-3, en1, and the 16 foreign ones espeak-ng reads accented English with) and festival's
# rab/don/MBROLA voice packages are in Debian's contrib and non-free components (each
# MBROLA database may be used to synthesize speech with the mbrola program, and not sold or built into a product that is
# sold: /usr/share/doc/mbrola-us1/copyright), and so are RHVoice's English voices (LGPL-2.1+) and SVOX pico (Apache-2.0),
# non-free for want of their training sources; on Debian, `dev` adds those components to apt's sources
# (/etc/apt/sources.list.d/asr-contrib-non-free.sources) when they are not there. On Ubuntu enable multiverse.
# Uses sudo for apt-get when not run as root. Re-running is cheap: apt and pip skip what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-user}

APT_USER="ffmpeg"
APT_DEV="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  festvox-rablpc16k festvox-don mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 festvox-us1 festvox-us2 festvox-us3 festvox-en1
  mbrola-af1 mbrola-nl2 mbrola-fr1 mbrola-fr4 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6
  mbrola-gr2 mbrola-hu1 mbrola-pl1 mbrola-ro1 mbrola-sw1 mbrola-sw2
  fortunes wordnet-base bible-kjv bible-kjv-text sox
  build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
  libboost-test-dev libeigen3-dev zlib1g-dev libbz2-dev liblzma-dev
  rhvoice rhvoice-english libttspico-utils"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
pkgs=$APT_USER
[ "$mode" = dev ] && pkgs="$pkgs $APT_DEV"
# GnuSpeech (recipes/synthetic's gnuspeech family) runs on Node.js: Debian's, unless the machine has a node already
[ "$mode" = dev ] && ! command -v node >/dev/null && pkgs="$pkgs nodejs npm"
missing=$(for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$mode" = dev ] && grep -qx "ID=debian" /etc/os-release 2>/dev/null \
     && ! apt-cache policy mbrola-us1 2>/dev/null | grep -q "Candidate: [0-9]"; then
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$suite" "$suite" | $sudo tee /etc/apt/sources.list.d/asr-contrib-non-free.sources >/dev/null
  fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = dev ]; then
  .venv/bin/python -m pip install -q -e ".[dev,synth,augment,export]"
else
  .venv/bin/python -m pip install -q -e .
fi
if [ "$mode" = dev ]; then  # GnuSpeech's WebAssembly build from npm (GPL-3.0), where voices.gnuspeech_dir expects it
  gnuspeech_dir="$HOME/.cache/asr/gnuspeech"
  [ -f "$gnuspeech_dir/node_modules/@echogarden/gnuspeech-wasm/package.json" ] \
    || npm install -q --prefix "$gnuspeech_dir" --no-audit --no-fund --no-update-notifier @echogarden/gnuspeech-wasm@0.3.0
fi
echo "installed into $(pwd)/.venv"
