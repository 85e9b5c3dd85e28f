# l2s serving image (GPU): vLLM engine, OpenAI-compatible server, Gradio UI.
#   docker build -t l2s .
#   docker run --gpus all -p 8000:8000 -v /models:/models l2s \
#       serve --engine vllm --long /models/long --short /models/short --host 0.0.0.0
# CPU variant: Dockerfile.cpu (hf engine, torch CPU wheel).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    L2S_CACHE=/home/l2s/.cache/l2s/embedded
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev curl \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 l2s
WORKDIR /opt/l2s
COPY pyproject.toml README.md ./
COPY l2s ./l2s
COPY server ./server
COPY ui ./ui
COPY configs ./configs
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install ".[vllm,serve,ui]"
ENV PATH=/opt/venv/bin:$PATH

USER l2s
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["l2s"]
CMD ["serve", "--engine", "vllm", "--host", "0.0.0.0", "--port", "8000"]
