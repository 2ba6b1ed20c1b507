# syntax=docker/dockerfile:1
# Images of the production path (README: Deploy to a cluster).
#
#   pipeline  our code and the pinned TFX stack; every Kubeflow step runs it.
#             --build-arg TF_VARIANT=gpu adds the CUDA libraries TensorFlow needs.
#   server    tfsp-model-server, for places where the official tensorflow/serving image
#             cannot run. The Kubernetes manifests (k8s/) use the official image.
#
#   docker build --target pipeline -t REGISTRY/tfsp-pipeline:TAG .
#   docker build --target pipeline --build-arg TF_VARIANT=gpu -t REGISTRY/tfsp-pipeline:TAG-gpu .
#   docker build --target server -t REGISTRY/tfsp-model-server:TAG .
#
# Debian 13 (trixie) has glibc 2.41 and CXXABI_1.3.15, which the manylinux_2_39 wheels of
# ml-metadata and TFDV need: no private runtime (scripts/provision_runtime.sh) in here.
# The base is pinned by tag and digest; refresh both together
# (docker buildx imagetools inspect python:3.11.14-slim-trixie).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:193fdd0bbcb3d2ae612bd6cc3548d2f7c78d65b549fcaa8af75624c47474444d

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Build stage: every dependency comes as a binary wheel, so no compiler is needed; the
# virtual environment is copied whole into the final stages.
FROM base AS build
ARG TF_VARIANT=cpu
RUN python -m venv /opt/venv
WORKDIR /opt/tfsp
COPY constraints.txt ./
# Dependencies first, in their own layer: code changes do not reinstall 3 GB of wheels.
RUN python -m pip install --no-cache-dir -c constraints.txt \
        "tensorflow==2.21.0" "tfx[kfp]==1.21.0" tensorflow-serving-api grpcio \
        "grpcio-health-checking<1.82" aiohttp \
        prometheus-client uvloop python-rapidjson numpy protobuf pillow scikit-learn matplotlib \
        pyarrow tqdm
# tensorflow[and-cuda] pulls NVIDIA's CUDA/cuDNN wheels. They are not in constraints.txt
# (which was frozen on CPU machines), so the GPU image's CUDA wheels are resolved at build
# time: pin them with a lock of their own before relying on reproducible GPU builds.
RUN if [ "$TF_VARIANT" = "gpu" ]; then \
        python -m pip install --no-cache-dir -c constraints.txt "tensorflow[and-cuda]==2.21.0"; \
    elif [ "$TF_VARIANT" != "cpu" ]; then \
        echo "TF_VARIANT must be cpu or gpu, not $TF_VARIANT" >&2; exit 1; \
    fi
COPY pyproject.toml README.md ./
COPY tfsp ./tfsp
COPY pipelines ./pipelines
COPY trainers ./trainers
COPY serving ./serving
RUN python -m pip install --no-cache-dir --no-deps . \
    && python -m pip check

# Every Kubeflow step of the compiled pipelines runs this image (python -m tfx...); the
# entry point is the tfsp CLI for one-off jobs (k8s/jobs/prepare-data.yaml).
FROM base AS pipeline
ARG TF_VARIANT=cpu
LABEL org.opencontainers.image.title="tfsp-pipeline" \
      org.opencontainers.image.description="tfsp TFX pipelines (TF 2.21, TFX 1.21), variant ${TF_VARIANT}"
RUN groupadd --gid 1000 tfsp \
    && useradd --uid 1000 --gid tfsp --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tfsp
# Only the virtual environment: the project is installed in it as the package `tfsp`, and
# the compiled specs read the curated schema from there (IMAGE_SCHEMA_FILE in
# pipelines/kubeflow_runner.py). No source tree and a neutral working directory: `python
# -m` puts the working directory first on sys.path, and a `tfsp/` source folder there would
# shadow the installed package.
COPY --from=build /opt/venv /opt/venv
ENV HOME=/tmp
WORKDIR /tmp
USER 1000:1000
ENTRYPOINT ["tfsp"]
CMD ["--help"]

# Our model server, for hosts where tensorflow/serving cannot run (no x86-64, no access to
# Docker Hub, a policy against its image). It reads the same models.config.
FROM pipeline AS server
LABEL org.opencontainers.image.title="tfsp-model-server"
EXPOSE 8500 8501
ENTRYPOINT ["tfsp-model-server"]
CMD ["--port=8500", "--rest_api_port=8501", "--model_config_file=/etc/tfsp/models.config"]
