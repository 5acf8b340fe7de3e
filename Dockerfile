# bibsnet-trainer BIDS App: one recipe for Docker and (through singularity.def) Apptainer.
#   docker build -t bibsnet-trainer .
#   docker build --build-arg BASE_IMAGE=local/python:3.11-slim-bookworm -t bibsnet-trainer .
# (the second where no registry is reachable: scripts/container/local_base.sh makes that base)
# Run: see docs/containers.md (docker run --gpus all --shm-size 8g ...).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="bibsnet-trainer" \
      org.opencontainers.image.description="BIDS App: trains nnU-Net v2 brain-segmentation models and segments infant and adult MRI" \
      org.opencontainers.image.licenses="Apache-2.0"

# Every cache a library may want goes to /tmp (writable under --read-only with a tmpfs on /tmp, and
# under Apptainer --containall); nothing is fetched at run time.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NIPYPE_NO_ET=1 NIPYPE_CONFIG_DIR=/tmp/.nipype \
    MPLCONFIGDIR=/tmp/.cache/matplotlib XDG_CACHE_HOME=/tmp/.cache \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/torchinductor TRITON_CACHE_DIR=/tmp/.cache/triton \
    HF_HUB_OFFLINE=1 nnUNet_compile=false \
    BIBSNET_IN_CONTAINER=1

WORKDIR /opt/bibsnet-trainer
# 1. Dependencies, from the lock file (exact versions, sha256 hashes): this layer is rebuilt only
#    when requirements/runtime.lock changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN python -m pip install --require-hashes -r requirements/runtime.lock

# 2. The app, last and without dependencies: a code change rebuilds only this layer.
COPY pyproject.toml README.md run.py ./
COPY bibsnet_trainer ./bibsnet_trainer
RUN python -m pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && python -c "import bibsnet_trainer.cli.run, nnunetv2, cornucopia, nipype, bids" \
    && chmod -R a+rX /opt/bibsnet-trainer

# Any UID may run it (docker run -u "$(id -u):$(id -g)"); 1000 when none is given.
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["python", "/opt/bibsnet-trainer/run.py"]
