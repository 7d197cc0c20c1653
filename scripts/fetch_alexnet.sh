#!/usr/bin/env bash
# Fetch the BVLC AlexNet weights (bvlc_alexnet.caffemodel, 233 MB) for AN-Finetune, where the
# internet is reachable, and verify them against the SHA-1 that BVLC's model-zoo readme
# (models/bvlc_alexnet/readme.md, field `sha1`) publishes. The weights are not redistributed
# with facs. Without them nothing fails: AN-Finetune starts from random weights.
#
#   scripts/fetch_alexnet.sh [DEST]        default DEST: models/bvlc_alexnet.caffemodel
#   ALEXNET_URL=...  to use a mirror (the checksum is still enforced)
#
# Exit status: 0 when the file is in place and verified, or when it could not be downloaded
# (a warning says so); 1 when a downloaded file does not match the checksum (it is deleted).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-models/bvlc_alexnet.caffemodel}
URL=${ALEXNET_URL:-http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel}
SHA1=9116a64c0fbe4459d18f4bb6b56d647b63920377

verify() { echo "${SHA1}  $1" | sha1sum -c --status; }

if [[ -f "$DEST" ]] && verify "$DEST"; then
  echo "fetch_alexnet: $DEST is present and its sha1 matches ($SHA1)"
  exit 0
fi

mkdir -p "$(dirname "$DEST")"
PART="$DEST.part"
rm -f "$PART"
echo "fetch_alexnet: downloading $URL"
ok=0
if command -v curl >/dev/null; then
  curl -fL --connect-timeout 15 --retry 2 -o "$PART" "$URL" && ok=1 || ok=0
elif command -v wget >/dev/null; then
  wget -q --timeout=15 -O "$PART" "$URL" && ok=1 || ok=0
else
  python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
    "$URL" "$PART" && ok=1 || ok=0
fi

if [[ $ok != 1 ]]; then
  rm -f "$PART"
  cat >&2 <<EOF
fetch_alexnet: WARNING: could not download the AlexNet weights (no internet here?).
fetch_alexnet: AN-Finetune (prototxt/paper/alexnet_finetune_*) will start from RANDOM weights:
fetch_alexnet: its frozen conv1-fc6 layers (lr_mult 0) then stay random and the spatial stream
fetch_alexnet: learns only fc7_au/fc8_au. Put a verified bvlc_alexnet.caffemodel at $DEST
fetch_alexnet: (sha1 $SHA1) and pass it to: facs train --solver ... --weights $DEST
EOF
  exit 0
fi

if ! verify "$PART"; then
  got=$(sha1sum "$PART" | cut -d' ' -f1)
  rm -f "$PART"
  echo "fetch_alexnet: ERROR: $URL has sha1 $got, expected $SHA1; file deleted" >&2
  exit 1
fi
mv "$PART" "$DEST"
echo "fetch_alexnet: wrote $DEST (sha1 $SHA1 verified; sha256 $(sha256sum "$DEST" | cut -d' ' -f1))"
