#!/usr/bin/env bash
# Fill docker/wheels/ on the host with everything `pip install ".[runtime]"` needs inside the
# image, for building where the build cannot reach a package index (no network, or an HTTPS
# proxy whose certificate the base image does not trust):
#
#   docker/wheels.sh [ARCH...]          # ARCH: amd64 (default: this machine's), arm64
#   docker build --build-arg BASE=edgesep-base:bookworm --build-arg OFFLINE=1 -t edgesep .
#
# Binary wheels for CPython 3.11 on glibc (the base image's Python; PYVER=3.12 for another),
# downloaded with pip's usual index settings; the edgesep wheel itself is not needed (the
# Dockerfile installs the build context's source, built with the setuptools fetched here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docker/wheels
pyver="${PYVER:-3.11}"
python="${PYTHON:-python3}"
archs=("$@")
if [ ${#archs[@]} -eq 0 ]; then
  case "$(uname -m)" in
    x86_64) archs=(amd64) ;;
    aarch64|arm64) archs=(arm64) ;;
    *) echo "wheels.sh: unknown machine $(uname -m); name amd64 or arm64" >&2; exit 2 ;;
  esac
fi
mkdir -p "$out"
# The runtime requirements, read from pyproject.toml (dependencies + the [runtime] extra).
reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
"$python" - > "$reqs" <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join([*project["dependencies"], *project["optional-dependencies"]["runtime"]]))
PY
build_reqs="$("$python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')"
for arch in "${archs[@]}"; do
  case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "wheels.sh: unknown ARCH $arch (amd64 or arm64)" >&2; exit 2 ;;
  esac
  # Every manylinux tag up to glibc 2.36 (Debian bookworm's): pip does not widen --platform.
  platforms=(--platform "manylinux2014_$machine")
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
  "$python" -m pip download -q --dest "$out" --only-binary=:all: "${platforms[@]}" \
    --python-version "$pyver" --implementation cp -r "$reqs" $build_reqs
done
echo "wheels.sh: $(find "$out" -name '*.whl' | wc -l) wheels in $out for ${archs[*]}"
