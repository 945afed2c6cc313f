# edgesep's runtime image: `stream`, `bench`, `validate`, `info` on an export folder, with the
# [runtime] extra only (LiteRT + ONNX Runtime, no TensorFlow). See README.md, "Docker".
#
#   docker build -t edgesep .                                    # python:3.11-slim, from PyPI
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" edgesep stream build/edge1 noisy.wav -o separated
#
# Without registry or index access (as in this project's CI): a local Debian base and wheels
# fetched on the host, installed with --no-index:
#
#   docker/make-base.sh && docker/wheels.sh
#   docker build --build-arg BASE=edgesep-base:bookworm --build-arg OFFLINE=1 -t edgesep .
#
# linux/amd64 and linux/arm64: `docker buildx build --platform linux/amd64,linux/arm64 .`;
# offline, per architecture (another one than the host's under qemu-user-static):
#   ARCH=arm64 docker/make-base.sh edgesep-base:bookworm-arm64 && docker/wheels.sh arm64
#   docker build --platform linux/arm64 --build-arg BASE=edgesep-base:bookworm-arm64 \
#       --build-arg OFFLINE=1 -t edgesep:arm64 .

# Any Debian-like image with Python >= 3.11 and its venv module (python3 on PATH).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# Set (to anything) to install only from docker/wheels/ (filled by docker/wheels.sh), no index.
ARG OFFLINE=
# Spelled out: the base docker/make-base.sh makes has no PATH of its own to extend.
ENV PATH=/opt/edgesep/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/edgesep
COPY docker/wheels/ /tmp/wheels/
COPY pyproject.toml README.md /src/
COPY edgesep/ /src/edgesep/
RUN if [ -n "$OFFLINE" ]; then set -- --no-index --find-links /tmp/wheels; fi \
 && pip install "$@" "/src[runtime]" \
 && pip uninstall -y -q pip setuptools \
 && ! python -c "import tensorflow" 2>/dev/null

FROM ${BASE}
ENV PATH=/opt/edgesep/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/edgesep /opt/edgesep
# A non-root default user; any other (`--user "$(id -u):$(id -g)"`) works too, so that files
# written to a bind-mounted folder belong to the caller.
RUN useradd --uid 1000 --user-group --create-home edgesep && mkdir -p /data
USER 1000:1000
WORKDIR /data
ENTRYPOINT ["edgesep"]
CMD ["--help"]
