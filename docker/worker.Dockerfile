# syntax=docker/dockerfile:1
# A GPU worker: `fastswitch worker`, gRPC on 50061, torch on CUDA.
# Build from the repository root: docker build -f docker/worker.Dockerfile -t IMAGE .
# The torch wheel brings its own CUDA runtime; the base image brings the NVIDIA container
# runtime's settings and the CUDA compatibility layer. Another CUDA build of torch:
#   --build-arg PIP_EXTRA_INDEX_URL=<that wheel index>
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}"
RUN pip install \
      "grpcio==1.85.*" "grpcio-health-checking==1.85.*" "grpcio-reflection==1.85.*" \
      "protobuf>=7.35.1,<8" "numpy>=1.26,<3" "safetensors>=0.4,<1" "tokenizers>=0.21,<1" \
      "tqdm>=4.66,<5"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lib lib
COPY services services
COPY operator operator
COPY cli cli
COPY benchmarks benchmarks
RUN pip install --no-deps .

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
