# syntax=docker/dockerfile:1
# The kvstore: `fastswitch kvstore`, gRPC on 50071; its state lives in Redis ($REDIS_URL).
# Build from the repository root: docker build -f docker/kvstore.Dockerfile -t IMAGE .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
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
RUN pip install ".[kvstore]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 fastswitch && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp fastswitch
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/fastswitch-healthcheck
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
EXPOSE 50071
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/usr/local/bin/fastswitch-healthcheck", "50071"]
ENTRYPOINT ["fastswitch"]
CMD ["kvstore"]
