# uservec serving image: the `serve` extra only (onnxruntime, FAISS, FastAPI, Redis client; no torch).
#
#   docker build -t uservec .
#   docker run -p 8000:8000 -v "$PWD/bundles/demo:/bundle:ro" uservec
#
# Bake a bundle in instead with a two-line Dockerfile: `FROM uservec` + `COPY bundles/demo /bundle`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE constraints.txt ./
# The source folders install as one `uservec` package (pyproject's package-dir); only the serve
# extra's dependencies are installed, so the offline stages are files here that nothing imports.
COPY uservec ./uservec
COPY training ./training
COPY export ./export
COPY service ./service
COPY configs ./configs
# Third-party versions come from constraints.txt, the same pins as `make install` and CI.
# hadolint ignore=DL3013
RUN pip install -c constraints.txt ".[serve]" \
    && useradd --create-home --uid 10001 uservec
USER 10001

# The image listens on every interface. /admin/reload (which loads any folder the process can
# read) exists only with an admin key of its own: -e USERVEC_ADMIN_API_KEYS=... (never one of
# USERVEC_API_KEYS). Slow clients meet the service's deadlines (USERVEC_HEADER_TIMEOUT_S,
# USERVEC_BODY_TIMEOUT_S, USERVEC_KEEP_ALIVE_TIMEOUT_S; 5 s each by default).
ENV USERVEC_HOST=0.0.0.0 \
    USERVEC_PORT=8000 \
    USERVEC_BUNDLE_PATH=/bundle
EXPOSE 8000

# Ready = bundle loaded and checked (503 before); tests/test_dockerfile.py runs this exact command.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('USERVEC_PORT', '8000'), timeout=2)"]

ENTRYPOINT ["uservec", "serve"]
