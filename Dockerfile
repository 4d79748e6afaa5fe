# syntax=docker/dockerfile:1.7
#
# Earshot images, two targets:
#   docker build --target cuda -t earshot:cuda .   NVIDIA GPUs: CUDA 12 runtime with the cuBLAS 12 that
#                                                   CTranslate2 loads, and cuDNN 9
#   docker build --target cpu  -t earshot:cpu  .   CPU only, on a slim Python base
# Both install exactly what uv.lock pins (`uv sync --locked --no-dev`), the same packages in both:
# the lock's torch is PyPI's CUDA build, which also runs on CPU, so the cpu image carries ~3.3 GiB of
# CUDA libraries it never loads (see README, "Deploy with Docker").
# No model is baked in: mount a model store at /models. README shows how to bake a bundle in.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.8
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG CPU_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------
# CPU build: the venv is made with the base image's own Python, so it runs unchanged in `cpu`.
FROM ${CPU_IMAGE} AS cpu-build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/earshot/venv
WORKDIR /src
# Dependencies first, in their own layer: they change far less often than the code.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY app ./app
COPY engines ./engines
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# ---------------------------------------------------------------------------------------------
# CUDA build: the CUDA base has no Python 3.11, so uv installs its own under /opt/earshot/python,
# which is copied with the venv.
FROM ${CUDA_IMAGE} AS cuda-build
ARG PYTHON_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/earshot/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PYTHON=${PYTHON_VERSION} \
    UV_PROJECT_ENVIRONMENT=/opt/earshot/venv
WORKDIR /src
RUN uv python install "${PYTHON_VERSION}"
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY app ./app
COPY engines ./engines
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# ---------------------------------------------------------------------------------------------
FROM ${CPU_IMAGE} AS cpu
# A fixed uid, so a host directory can be given to it (`chown 10001 models`) when the store is writable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/earshot earshot \
    && install -d -o earshot -g earshot /models /opt/earshot/models
COPY --from=cpu-build /opt/earshot/venv /opt/earshot/venv
ENV PATH=/opt/earshot/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EARSHOT_MODELS_DIR=/models \
    EARSHOT_HOST=0.0.0.0 \
    EARSHOT_PORT=8000 \
    EARSHOT_DEVICE=cpu
VOLUME ["/models"]
EXPOSE 8000
USER 10001:10001
WORKDIR /home/earshot
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["earshot", "health"]
ENTRYPOINT ["earshot"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/earshot earshot \
    && install -d -o earshot -g earshot /models /opt/earshot/models
COPY --from=cuda-build /opt/earshot/python /opt/earshot/python
COPY --from=cuda-build /opt/earshot/venv /opt/earshot/venv
ENV PATH=/opt/earshot/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EARSHOT_MODELS_DIR=/models \
    EARSHOT_HOST=0.0.0.0 \
    EARSHOT_PORT=8000 \
    EARSHOT_DEVICE=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/models"]
EXPOSE 8000
USER 10001:10001
WORKDIR /home/earshot
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["earshot", "health"]
ENTRYPOINT ["earshot"]
CMD ["serve"]
