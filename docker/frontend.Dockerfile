# syntax=docker/dockerfile:1
# A frontend, the API clients call: `fastswitch frontend`, gRPC on 50051. It authenticates
# tenants, tokenizes prompts and relays tokens from the workers; stateless, run as many as the
# load needs. No torch, no GPU.
# Build from the repository root: docker build -f docker/frontend.Dockerfile -t IMAGE .
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
RUN pip install ".[frontend]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 fastswitch && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp fastswitch
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/fastswitch-healthcheck
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp HF_HUB_OFFLINE=1
USER 10001:10001
# gRPC, and the OpenAI-compatible HTTP API (--http-port's default)
EXPOSE 50051 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/bin/fastswitch-healthcheck", "50051"]
ENTRYPOINT ["fastswitch"]
CMD ["frontend"]
