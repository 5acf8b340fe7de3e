# bibsnet-trainer BIDS App. Build: docker build -t bibsnet-trainer .
# Run:   docker run --gpus all --rm -v /path/bids:/data:ro -v /path/out:/out bibsnet-trainer /data /out group
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NIPYPE_NO_ET=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    nnUNet_compile=false

WORKDIR /opt/bibsnet-trainer
COPY pyproject.toml README.md ./
COPY bibsnet_trainer ./bibsnet_trainer
COPY run.py ./
RUN pip install --no-cache-dir . && useradd --create-home --uid 1000 bibsnet \
    && chmod -R a+rX /opt/bibsnet-trainer

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["python", "/opt/bibsnet-trainer/run.py"]
