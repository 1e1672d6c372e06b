# syntax=docker/dockerfile:1
# The training service: test-then-train on features and labels, ONNX models to the models topic.
# Build from the repository root:
#   docker build -f services/docker/training.Dockerfile -t streamml-training .
# The image carries the `training` extra (torch, onnx). torch comes from TORCH_INDEX_URL, by
# default the PyTorch CPU index: the torch wheel on PyPI is the CUDA build, which pulls in
# the NVIDIA libraries and makes the image gigabytes larger. A CUDA index, such as
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
# gives the CUDA build, but the training service keeps its models on the CPU, so that build
# only adds size until the service places models on a GPU. Either way the torch version is
# the one pinned in pyproject.toml.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
# torch is installed first, from TORCH_INDEX_URL, with the requirement of the `training` extra.
# Installing the project afterwards finds that requirement met and keeps this build of torch
# (a local version such as 2.15.0+cpu satisfies ==2.15.0).
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    torch_requirement="$(python -c 'import re, tomllib; extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["training"]; print(next(r for r in extra if re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] == "torch"))')" \
    && pip install --index-url "$TORCH_INDEX_URL" "$torch_requirement"
COPY services/streamml ./services/streamml
# The versions are pinned in pyproject.toml, but hadolint reads ".[training]" as an unpinned package.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[training]"
# A CPU index must give a CPU build: stop here rather than ship the CUDA build by mistake.
RUN case "$TORCH_INDEX_URL" in \
      */cpu | */cpu/) python -c "import sys, torch; sys.exit(f'torch {torch.__version__} is a CUDA build' if torch.version.cuda else 0)" ;; \
    esac

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="streamml-training" \
      org.opencontainers.image.description="streamml training service" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 streamml \
    && useradd --system --uid 10001 --gid streamml --home-dir /var/lib/streamml --no-create-home \
       --shell /usr/sbin/nologin streamml \
    && install -d -o streamml -g streamml /var/lib/streamml /var/lib/streamml/models
COPY --from=builder /opt/streamml /opt/streamml
# Models over the spec's training.max_inline_model_bytes are written to STREAMML_TRAINING_MODEL_DIR
# and published as file:// URIs: inference must mount the same storage at the same path.
ENV PATH=/opt/streamml/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMML_TRAINING_SPEC=/etc/streamml/pipeline.yaml \
    STREAMML_TRAINING_MODEL_DIR=/var/lib/streamml/models \
    STREAMML_TRAINING_HTTP_HOST=0.0.0.0 \
    STREAMML_TRAINING_HTTP_PORT=8080 \
    STREAMML_TRAINING_LOG_JSON=true
WORKDIR /var/lib/streamml
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('STREAMML_TRAINING_HTTP_PORT') or '8080'), timeout=4)"]
ENTRYPOINT ["streamml", "run", "training"]
