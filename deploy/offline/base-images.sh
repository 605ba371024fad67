#!/usr/bin/env bash
# Build the base images of deploy/Dockerfile and the compose files from Debian packages, for
# hosts that cannot pull from an image registry (air-gapped, or no registry reachable).
#
#   deploy/offline/base-images.sh [--mirror URL] [--suite SUITE] [--force] [IMAGE...]
#
# IMAGE is any of python, redis, prometheus, node-exporter (default: all four). Each one is
# `debootstrap --variant=minbase` plus its Debian packages, trimmed (no apt lists or package
# cache, docs, man pages, locales), imported as bem-offline/IMAGE:SUITE:
#
#   bem-offline/python:SUITE          python3 + python3-venv        (PYTHON_IMAGE)
#   bem-offline/redis:SUITE           redis-server                  (REDIS_IMAGE)
#   bem-offline/prometheus:SUITE      prometheus, wget              (PROMETHEUS_IMAGE)
#   bem-offline/node-exporter:SUITE   prometheus-node-exporter, wget (NODE_EXPORTER_IMAGE)
#
# deploy/offline/offline.env names them for Compose (`--env-file deploy/offline/offline.env`).
# Grafana is not packaged by Debian: the monitoring and full profiles need its image from
# elsewhere (`docker load`), or run without it (name the other services on `up`).
#
# An image whose label org.bem.offline.inputs matches this script and its arguments is kept
# (no rebuild); --force rebuilds. Nothing of the building host goes into an image: no
# resolv.conf, hostname, proxy or certificate of it, and sources.list names the public
# mirror whatever --mirror was used. Needs root, debootstrap and a Docker engine; the mirror
# (default http://deb.debian.org/debian) may be a local one. DOCKER overrides the docker
# command; downloaded packages are kept in /var/cache/bem-offline (BEM_OFFLINE_CACHE).
set -euo pipefail

DOCKER="${DOCKER:-docker}"
CACHE="${BEM_OFFLINE_CACHE:-/var/cache/bem-offline}"
PUBLIC_MIRROR=http://deb.debian.org/debian
mirror="$PUBLIC_MIRROR"
suite=bookworm
force=0
images=()

declare -A PACKAGES=([python]="python3,python3-venv" [redis]="redis-server"
                     [prometheus]="prometheus,wget" [node-exporter]="prometheus-node-exporter,wget")
# docker import --change instructions of each image (the upstream images' conventions)
declare -A CHANGES=(
  [python]='ENV LANG=C.UTF-8|CMD ["python3"]'
  [redis]='WORKDIR /data|USER redis|CMD ["redis-server"]'
  [prometheus]='WORKDIR /prometheus|USER prometheus|ENTRYPOINT ["/usr/bin/prometheus"]|CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
  [node-exporter]='USER nobody|ENTRYPOINT ["/usr/bin/prometheus-node-exporter"]'
)
# what an image does without: moment-timezone's 214 MB of per-release tz data (the web UI
# loads only builds/moment-timezone-with-data.min.js)
declare -A UNUSED=([prometheus]="usr/share/javascript/moment-timezone/data")
# directories the image's user writes (named volumes mounted there copy the ownership)
declare -A OWNED=([redis]="redis:/data" [prometheus]="prometheus:/prometheus")

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
  echo "base-images.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; mirror="$2"; shift 2 ;;
    --suite) [ $# -ge 2 ] || die "--suite needs a Debian suite"; suite="$2"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -n "${PACKAGES[$1]:-}" ] || die "unknown image $1: python, redis, prometheus or node-exporter"
       images+=("$1"); shift ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=(python redis prometheus node-exporter)
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

# inputs IMAGE: what the image is made of; the same inputs make the same image.
inputs() {
  { sha256sum < "${BASH_SOURCE[0]}"; echo "$1 $suite ${PACKAGES[$1]}"; } | sha256sum | cut -c1-16
}

current() {
  "$DOCKER" image inspect --format '{{ index .Config.Labels "org.bem.offline.inputs" }}' "$1" \
    2>/dev/null || true
}

trim() {
  local root="$1" image="$2" path
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
  # The engine provides these per container; the building host's must not leak in.
  rm -f "$root"/etc/resolv.conf "$root"/etc/hostname "$root"/etc/hosts
  echo "deb $PUBLIC_MIRROR $suite main" > "$root/etc/apt/sources.list"
  for path in ${UNUSED[$image]:-}; do
    rm -rf "${root:?}/$path"
  done
}

root=""  # the rootfs being built, removed however the script ends
trap '[ -z "$root" ] || rm -rf "$root" "$root.log"' EXIT

build() {
  local image="$1" tag="bem-offline/$1:$suite" key started
  key="$(inputs "$image")"
  if [ "$force" = 0 ] && [ "$(current "$tag")" = "$key" ]; then
    echo "base-images.sh: $tag is up to date (inputs $key)"
    return
  fi
  started=$SECONDS
  root="$(mktemp -d "${TMPDIR:-/tmp}/bem-offline-$image.XXXXXX")"
  mkdir -p "$CACHE/$suite"
  echo "base-images.sh: $tag: debootstrap $suite + ${PACKAGES[$image]} from $mirror"
  debootstrap --variant=minbase --cache-dir="$CACHE/$suite" --include="${PACKAGES[$image]}" \
    "$suite" "$root" "$mirror" > "$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; die "debootstrap of $image failed"; }
  if [ -n "${OWNED[$image]:-}" ]; then
    local user="${OWNED[$image]%%:*}" dir="${OWNED[$image]#*:}"
    mkdir -p "$root$dir"
    chroot "$root" chown "$user:$user" "$dir"
  fi
  trim "$root" "$image"
  local changes=() change
  IFS='|' read -ra parts <<< "${CHANGES[$image]}"
  for change in "${parts[@]}" "LABEL org.bem.offline.inputs=$key" \
                "LABEL org.bem.offline.packages=${PACKAGES[$image]}"; do
    changes+=(--change "$change")
  done
  tar -C "$root" --numeric-owner -cf - . | "$DOCKER" import "${changes[@]}" - "$tag" >/dev/null
  rm -rf "$root" "$root.log"
  root=""
  echo "base-images.sh: $tag built in $((SECONDS - started)) s"
}

for image in "${images[@]}"; do
  build "$image"
done
