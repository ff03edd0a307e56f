# syntax=docker/dockerfile:1
# The scheduler, the control plane: `fastswitch scheduler`, gRPC on 50052, called by the
# frontends only (clients call the frontend image's 50051). No torch, no GPU.
# Build from the repository root: docker build -f docker/scheduler.Dockerfile -t IMAGE .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Honoured by pip when given: --build-arg PIP_INDEX_URL=... (a mirror).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lib lib
COPY services services
COPY operator operator
COPY stack stack
COPY cli cli
COPY benchmarks benchmarks
# The package with this image's extra: its dependencies are declared in pyproject.toml only.
RUN pip install ".[scheduler]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 fastswitch && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp fastswitch
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/fastswitch-healthcheck
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/bin/fastswitch-healthcheck", "50052"]
ENTRYPOINT ["fastswitch"]
CMD ["scheduler"]
