#!/usr/bin/env bash
# Make the wheelhouse an offline image build installs from: a wheel of every dependency of
# bem, and of what building bem's own wheel needs (setuptools, wheel), made on this host.
#
#   deploy/offline/wheelhouse.sh [DIR]      (default: deploy/offline/wheelhouse)
#
# A wheelhouse made from the same pyproject.toml with the same Python is kept as it is.
# Then: docker build ... --build-arg WHEELHOUSE=deploy/offline/wheelhouse (the directory must
# be inside the build context and admitted by deploy/Dockerfile.dockerignore, as this one is).
# The wheels must suit the image's Python, and pip picks them for the Python that runs it,
# environment markers included (redis needs async-timeout below 3.11.3): run this with a
# CPython 3.11 on x86_64 Linux no newer than the image's - for the Debian-built base image,
# Debian bookworm's own /usr/bin/python3 (3.11.2) with python3-pip. PYTHON names it (default
# python3). pip reads this host's own configuration (index, proxy, certificates) here, and
# only here: none of it goes into the image.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here/wheelhouse}"
PYTHON="${PYTHON:-python3}"

version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$version" = 3.11 ] || { echo "wheelhouse.sh: $PYTHON is Python $version; the images run 3.11" >&2; exit 2; }
# The same dependencies for the same Python make the same wheelhouse: keep it.
inputs="$({ cat "$root/pyproject.toml" "${BASH_SOURCE[0]}"; "$PYTHON" -VV; } | sha256sum | cut -c1-16)"
if [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
  echo "wheelhouse.sh: $out is up to date (inputs $inputs)"
  exit 0
fi
mkdir -p "$out"
rm -f "$out"/*.whl "$out/.inputs"  # a wheel of an older dependency set must not be picked
# bem's own wheel is left out: the image builds it from the source it copies.
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$out" \
  "$root" "setuptools>=69" wheel
rm -f "$out"/bem-*.whl
echo "$inputs" > "$out/.inputs"
echo "wheelhouse.sh: $(ls "$out" | wc -l) wheels for Python $("$PYTHON" -c 'import platform; print(platform.python_version())') in $out"
