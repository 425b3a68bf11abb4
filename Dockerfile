# syntax=docker/dockerfile:1
# The shipper's image. Build from the repository root:
#   docker build -t mlops-shipper:0.1.0 .                      # with the azure extra (Event Grid enrichment)
#   docker build --build-arg EXTRAS= -t mlops-shipper:0.1.0 .  # MLflow and Elasticsearch only
# Run: `docker run --rm mlops-shipper:0.1.0 validate`, `... run`, `... serve` (the default), `... setup`.
# Settings are SHIPPER_* environment variables (docs/configuration.md); never bake secrets in.

# One exact tag for both stages: the build stage's venv links to this interpreter.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtual environment with the shipper and its pinned dependencies -----------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=azure
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/shipper
COPY constraints.txt pyproject.toml README.md LICENSE ./
COPY shipper/ shipper/
# Every version comes from constraints.txt, the file CI tests with; `pip check` fails the build
# on a broken dependency set.
RUN /opt/shipper/bin/pip install --no-cache-dir -c constraints.txt ".[${EXTRAS}]" \
 && /opt/shipper/bin/pip check

# --- runtime: the interpreter, the venv, an unprivileged user ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="shipper" \
      org.opencontainers.image.description="Ships MLflow and Azure Machine Learning telemetry into the Elastic Stack" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 shipper \
 && useradd --system --uid 10001 --gid shipper --create-home --home-dir /home/shipper \
      --shell /usr/sbin/nologin shipper
COPY --from=build /opt/shipper /opt/shipper
ENV PATH=/opt/shipper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SHIPPER_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/shipper
# `shipper serve` listens here (SHIPPER_WEBHOOK_PORT).
EXPOSE 8080
# The webhook's liveness endpoint. `shipper run` serves no HTTP: docker-compose.yml gives that
# service its own check, and Kubernetes ignores HEALTHCHECK (deploy/ uses probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SHIPPER_WEBHOOK_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["shipper"]
CMD ["serve"]
