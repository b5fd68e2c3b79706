# syntax=docker/dockerfile:1
#
# eventscope as a container: `docker build -t eventscope .`, then see docs/deployment.md.
# The image runs `eventscope serve` on 0.0.0.0:8000 as uid 10001, in /data (where the default
# SQLite file would land). Authentication cannot be turned off on 0.0.0.0: set EVENTSCOPE_TOKEN,
# or read the generated login link in `docker logs`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of the project, installed with its dependencies into /opt/venv ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the wheel is built from. README.md is the package's `readme`; eventscope/ holds
# symlinks to backend/, web/, templates/, static/, testing/ and examples/, whose contents the
# wheel puts under the one import package `eventscope` (pyproject.toml).
COPY pyproject.toml README.md ./
COPY eventscope/ eventscope/
COPY backend/ backend/
COPY web/ web/
COPY templates/ templates/
COPY static/ static/
COPY testing/ testing/
COPY examples/ examples/

RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install /tmp/wheels/eventscope-*.whl \
 && rm -rf /tmp/wheels

# Fail the build if the installed package cannot find its templates or static files. Run from /
# so that /src is not what gets imported.
RUN cd / \
 && /opt/venv/bin/python -c "from eventscope.web.templating import asset_dir; print(asset_dir('templates'), asset_dir('static'))" \
 && /opt/venv/bin/eventscope --help > /dev/null

# --- runtime: the same base, the venv, a non-root user ----------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="eventscope" \
      org.opencontainers.image.description="Records every event on RabbitMQ exchanges; live web UI with history." \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --gid 10001 eventscope \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin eventscope \
 && mkdir /data \
 && chown eventscope:eventscope /data

COPY --from=build /opt/venv /opt/venv

ENV EVENTSCOPE_HOST=0.0.0.0 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /data
EXPOSE 8000

# /healthz answers 200 {"status":"ok"} while the database answers, 503 otherwise. Any error
# (refused, timeout, 503) is an uncaught exception: exit status 1. Proxy variables are ignored.
# Only `serve` has an HTTP port: run `ingest` and `demo` with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('EVENTSCOPE_PORT', '8000'), timeout=3).close()"]

USER eventscope
ENTRYPOINT ["eventscope"]
CMD ["serve"]
