# syntax=docker/dockerfile:1
# A GPU worker: `fastswitch worker`, gRPC on 50061, torch on CUDA.
# Build from the repository root: docker build -f docker/worker.Dockerfile -t IMAGE .
# The torch wheel brings its own CUDA runtime; the base image brings the NVIDIA container
# runtime's settings and the CUDA compatibility layer. Another CUDA build of torch (same version,
# constraints.txt's): --build-arg PIP_EXTRA_INDEX_URL=<that wheel index>
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, in a layer of its own (gigabytes), so a change of the sources does not fetch it
# again; the version is constraints.txt's, the requirement pyproject.toml's worker extra.
COPY constraints.txt ./
RUN pip install -c constraints.txt torch
COPY pyproject.toml README.md ./
COPY lib lib
COPY services services
COPY operator operator
COPY stack stack
COPY cli cli
COPY benchmarks benchmarks
# The package with this image's extra: its dependencies are declared in pyproject.toml only.
RUN pip install -c constraints.txt ".[worker]"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 fastswitch \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp fastswitch
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/fastswitch-healthcheck
# Caches go to /tmp (a writable emptyDir in the pods; the root filesystem is read-only).
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp XDG_CACHE_HOME=/tmp/.cache \
    HF_HUB_OFFLINE=1 NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50061
# Loading a checkpoint takes a while: NOT_SERVING until the model and KV cache are ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python", "/usr/local/bin/fastswitch-healthcheck", "50061"]
ENTRYPOINT ["fastswitch"]
CMD ["worker"]
