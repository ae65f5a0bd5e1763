# The stream_app worker: `stream-app worker` in a small image, as an unprivileged user.
# Built by `docker compose up` (docker-compose.yml); see docs/deploy.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Every dependency ships a manylinux wheel for CPython 3.11, so no compiler is needed here.
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin stream \
    && mkdir /data \
    && chown stream:stream /data

USER stream

# Facts of the container, not defaults of the program: local state goes to /data, and the web
# server listens on every interface of the container so that Prometheus (another container) can
# scrape /metrics. Outside a container the default stays loopback (web.host = 127.0.0.1).
ENV STREAM_APP_DATA_DIR=/data \
    STREAM_APP_WEB__HOST=0.0.0.0 \
    STREAM_APP_WEB_PORT=6066
EXPOSE 6066

# /health answers 200 once this worker serves its share of partitions (503 while starting).
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['STREAM_APP_WEB_PORT'] + '/health', timeout=4)"]

ENTRYPOINT ["stream-app"]
CMD ["worker"]
