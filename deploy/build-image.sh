#!/usr/bin/env bash
# Builds the raftlog container image without reaching a registry.
#
#   1. A Debian base image (raftlog-base:bookworm-2) made from Debian's packages with mmdebstrap
#      and `docker import`, only when it is not present (it is the cache: remove it to rebuild).
#      Its tag's number goes up whenever the package list below changes, so that every machine
#      builds the new base instead of reusing an old one (2: faketime, for the chaos clock skew).
#   2. Wheels for raftlog and its pinned dependencies (constraints.txt), built on this host with
#      pip, because HTTPS from inside a `docker build` goes through a proxy whose CA the build
#      does not trust.
#   3. `docker build` of deploy/Dockerfile on that base, installing the wheels with --no-index.
#
# A user with a registry can skip all of this: `docker build -f deploy/Dockerfile .` builds from
# python:3.11-slim (the Dockerfile's default BASE_IMAGE) once wheels are in deploy/.build/wheels.
#
# Environment: FORCE=1 (rebuild the raftlog image even when its sources are unchanged), IMAGE (raftlog:latest), BASE_IMAGE (raftlog-base:bookworm-2), SUITE (bookworm),
# PYTHON (python3 on this host; must be the same minor version as the base's python3).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-raftlog:latest}
BASE_IMAGE=${BASE_IMAGE:-raftlog-base:bookworm-2}
SUITE=${SUITE:-bookworm}
PYTHON=${PYTHON:-python3}
CONTEXT=deploy/.build

log() { printf '%s build-image: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap; }
    log "building base image $BASE_IMAGE from Debian $SUITE packages (mmdebstrap)"
    started=$(date +%s)
    # The host's apt sources (and proxy settings) are used when no mirror is given.
    # Documentation, man pages and locales are left out: nothing in the image reads them.
    mmdebstrap --mode=root --variant=minbase \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include=python3,python3-venv,ca-certificates,iproute2,iptables,procps,faketime \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" - \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
    log "base image $BASE_IMAGE built in $(( $(date +%s) - started )) s"
else
    log "base image $BASE_IMAGE present (cached)"
fi

# The raftlog image is rebuilt only when what goes into it changed: its label holds a hash of
# the sources, the pins and this directory's build files.
source_hash=$(git ls-files -co --exclude-standard -- raftlog cli chaos pyproject.toml constraints.txt \
                  deploy/Dockerfile deploy/healthcheck.py deploy/build-image.sh \
              | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{index .Config.Labels "raftlog.source"}}' "$IMAGE" 2>/dev/null)" = "$source_hash" ] \
   && [ -z "${FORCE:-}" ]; then
    log "image $IMAGE is up to date with the sources ($source_hash; FORCE=1 rebuilds it)"
    exit 0
fi

host_py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
base_py=$(docker run --rm --network none "$BASE_IMAGE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$host_py" != "$base_py" ]; then
    echo "build-image: the host's $PYTHON is $host_py but $BASE_IMAGE has python $base_py;" \
         "wheels built here would not install there (set PYTHON to a python$base_py)" >&2
    exit 1
fi

log "building wheels (constraints.txt) into $CONTEXT/wheels"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels"
"$PYTHON" -m pip wheel -q --disable-pip-version-check -c constraints.txt -w "$CONTEXT/wheels" .
cp deploy/healthcheck.py "$CONTEXT/"

log "building $IMAGE on $BASE_IMAGE"
started=$(date +%s)
docker build -q -f deploy/Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" --label raftlog.source="$source_hash" \
    -t "$IMAGE" "$CONTEXT" >/dev/null
log "image $IMAGE built in $(( $(date +%s) - started )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
