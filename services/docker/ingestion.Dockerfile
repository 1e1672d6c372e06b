# syntax=docker/dockerfile:1
# The ingestion service: CloudEvents from the input topic and `POST /`, validated records to the raw topic.
# Build from the repository root:
#   docker build -f services/docker/ingestion.Dockerfile -t streamml-ingestion .
# The image needs only the core dependencies: no ONNX Runtime, faust or torch.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/streamml ./services/streamml
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="streamml-ingestion" \
      org.opencontainers.image.description="streamml ingestion service" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 streamml \
    && useradd --system --uid 10001 --gid streamml --home-dir /var/lib/streamml --no-create-home \
       --shell /usr/sbin/nologin streamml \
    && install -d -o streamml -g streamml /var/lib/streamml
COPY --from=builder /opt/streamml /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMML_INGESTION_SPEC=/etc/streamml/pipeline.yaml \
    STREAMML_INGESTION_HTTP_HOST=0.0.0.0 \
    STREAMML_INGESTION_HTTP_PORT=8080 \
    STREAMML_INGESTION_LOG_JSON=true
WORKDIR /var/lib/streamml
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('STREAMML_INGESTION_HTTP_PORT') or '8080'), timeout=4)"]
ENTRYPOINT ["streamml", "run", "ingestion"]
