# syntax=docker/dockerfile:1
# The inference service: ONNX Runtime predictions for feature vectors, hot-swapping model versions.
# Build from the repository root:
#   docker build -f services/docker/inference.Dockerfile -t streamml-inference .
#   docker build -f services/docker/inference.Dockerfile --build-arg ONNXRUNTIME=gpu -t streamml-inference:gpu .
# ONNXRUNTIME=cpu installs the `cpu` extra (onnxruntime). ONNXRUNTIME=gpu installs the `gpu` extra
# (onnxruntime-gpu) with the CUDA and cuDNN libraries from PyPI, so the GPU image needs only
# the NVIDIA driver on the host. The image never carries torch: a build step fails if it does.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG ONNXRUNTIME=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/streamml
ENV PATH=/opt/streamml/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/streamml ./services/streamml
# onnxruntime-gpu's `cuda` and `cudnn` extras add the NVIDIA runtime wheels that match its
# CUDA major version. Its own version stays the one that the `gpu` extra pins.
# The versions are pinned in pyproject.toml, but hadolint reads ".[cpu]" as an unpinned package.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$ONNXRUNTIME" in \
      cpu) set -- ".[cpu]" ;; \
      gpu) set -- ".[gpu]" "onnxruntime-gpu[cuda,cudnn]" ;; \
      *) echo "ONNXRUNTIME must be cpu or gpu, not '$ONNXRUNTIME'" >&2; exit 1 ;; \
    esac \
    && pip install "$@"

FROM ${PYTHON_IMAGE}
ARG ONNXRUNTIME=cpu
LABEL org.opencontainers.image.title="streamml-inference" \
      org.opencontainers.image.description="streamml inference service (ONNX Runtime, ${ONNXRUNTIME})" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 streamml \
    && useradd --system --uid 10001 --gid streamml --home-dir /var/lib/streamml --no-create-home \
       --shell /usr/sbin/nologin streamml \
    && install -d -o streamml -g streamml /var/lib/streamml /var/lib/streamml/models
COPY --from=builder /opt/streamml /opt/streamml
# The CUDA execution provider loads libcudart, libcublas and libcudnn by name. The NVIDIA wheels
# install them under site-packages/nvidia/*/lib, outside the dynamic linker's default search
# path, so the GPU image adds those folders to the linker cache.
# NOTE: the GPU variant has been checked against PyPI's package metadata only, not built or run on a GPU.
RUN if [ "$ONNXRUNTIME" = gpu ]; then \
      find /opt/streamml/lib/python3*/site-packages/nvidia -type d -name lib \
        > /etc/ld.so.conf.d/streamml-nvidia.conf \
      && test -s /etc/ld.so.conf.d/streamml-nvidia.conf \
      && ldconfig; \
    fi
RUN /opt/streamml/bin/python -c "import importlib.util, sys; sys.exit('torch is installed, but the inference image must not carry it' if importlib.util.find_spec('torch') else 0)"
ENV PATH=/opt/streamml/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMML_INFERENCE_SPEC=/etc/streamml/pipeline.yaml \
    STREAMML_INFERENCE_PROVIDER=auto \
    STREAMML_INFERENCE_HTTP_HOST=0.0.0.0 \
    STREAMML_INFERENCE_HTTP_PORT=8080 \
    STREAMML_INFERENCE_LOG_JSON=true
WORKDIR /var/lib/streamml
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('STREAMML_INFERENCE_HTTP_PORT') or '8080'), timeout=4)"]
ENTRYPOINT ["streamml", "run", "inference"]
