# syntax=docker/dockerfile:1
# The features service: a faust worker that turns raw records into feature vectors and labels.
# Build from the repository root:
#   docker build -f services/docker/features.Dockerfile -t streamml-features .
# The image carries the `features` extra (faust-streaming, aiokafka codecs): no ONNX Runtime or torch.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# PyPI has no wheel of faust-streaming 0.15.3, so pip builds it from the sdist. Without a C
# compiler its setup.py quietly falls back to pure Python; gcc and the zlib headers let it
# build the Cython extensions. The builder stage is thrown away, so its packages stay unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/streamml ./services/streamml
# The versions are pinned in pyproject.toml, but hadolint reads ".[features]" as an unpinned package.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[features]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="streamml-features" \
      org.opencontainers.image.description="streamml features service" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 streamml \
    && useradd --system --uid 10001 --gid streamml --home-dir /var/lib/streamml --no-create-home \
       --shell /usr/sbin/nologin streamml \
    && install -d -o streamml -g streamml /var/lib/streamml /var/lib/streamml/features
COPY --from=builder /opt/streamml /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMML_FEATURES_SPEC=/etc/streamml/pipeline.yaml \
    STREAMML_FEATURES_DATA_DIR=/var/lib/streamml/features \
    STREAMML_FEATURES_HTTP_HOST=0.0.0.0 \
    STREAMML_FEATURES_HTTP_PORT=8080 \
    STREAMML_FEATURES_LOG_JSON=true
WORKDIR /var/lib/streamml
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('STREAMML_FEATURES_HTTP_PORT') or '8080'), timeout=4)"]
ENTRYPOINT ["streamml", "run", "features"]
