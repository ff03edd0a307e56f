# syntax=docker/dockerfile:1
# The kopf operator for FastSwitchCluster resources (charts/fastswitch runs it).
# Build from the repository root: docker build -f docker/operator.Dockerfile -t IMAGE .
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
RUN pip install ".[operator]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 fastswitch && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp fastswitch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["kopf"]
CMD ["run", "--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", \
     "-m", "fastswitch_operator.handlers"]
