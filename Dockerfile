# Bitseek: multi-stage image. The builder makes a virtual environment; the runtime stage copies it
# into a clean slim Python and runs as a numeric non-root user.
#   CPU (default):  docker build -t bitseek:cpu .
#   CUDA:           docker build --build-arg TORCH_VARIANT=cu128 -t bitseek:gpu .
#   Milvus backend: docker build --build-arg BITSEEK_EXTRAS=milvus -t bitseek:milvus .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# torch comes from PyTorch's own wheel index: "cpu" keeps the image small (no CUDA libraries);
# a CUDA variant (cu126, cu128, ...) bundles its CUDA runtime, so the same slim base serves GPUs.
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, alone, so the project's "torch>=2.1" is already met and pip never pulls another build
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models/ models/
COPY training/ training/
COPY service/ service/
# optional extras of pyproject.toml: "milvus" for BITSEEK_BACKEND=milvus (docker/cluster/)
ARG BITSEEK_EXTRAS=""
RUN pip install --no-cache-dir . \
    && if [ -n "${BITSEEK_EXTRAS}" ]; then pip install --no-cache-dir "./[${BITSEEK_EXTRAS}]"; fi \
    && python -c "import torch, service.cli; print('torch', torch.__version__)"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="bitseek" \
      org.opencontainers.image.description="Semantic-hashing retrieval service" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    BITSEEK_HOST=0.0.0.0 \
    BITSEEK_PORT=8000 \
    BITSEEK_DATA_DIR=/data \
    BITSEEK_DEVICE=auto
# uid/gid 10001: numeric, so Kubernetes' runAsNonRoot can verify it; a home outside /data keeps
# caches out of the volume
RUN groupadd --system --gid 10001 bitseek \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/bitseek \
       --shell /usr/sbin/nologin bitseek \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/bitseek-entrypoint
# models, items and indexes live here: mount a volume to keep them across container replacement
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8000
# Ready = models loaded and the store open. The first start trains the demo models (about two
# minutes on two cores), so failures in the first 10 minutes do not count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BITSEEK_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/bitseek-entrypoint"]
CMD ["bitseek", "serve"]
