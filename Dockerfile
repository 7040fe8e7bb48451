# The bot's container image (docs/operations.md). Build: docker build -t discord-openai-bot .
# Secrets come from the environment at run time (compose's env_file, or docker run --env-file .env):
# nothing here copies .env, and .dockerignore keeps it out of the build context too.
ARG PYTHON_VERSION=3.11

# -- build: compile wheels into a virtual environment, with pip and the build tools left behind ----------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
# The same install .ci/run proves on a fresh machine ("the container's install step").
RUN pip install --no-cache-dir .

# -- runtime: the slim base, the virtual environment, an unprivileged user, state on a volume -----------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATABASE_URL=sqlite:////data/bot.db \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9108
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir -p /data \
    && chown bot:bot /data
COPY --from=build /opt/venv /opt/venv
USER bot:bot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9108
# 200 only while the gateway is connected and the database takes a write (docs/operations.md, "Health").
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4); sys.exit(0)"]
# SIGTERM (docker stop) lets requests in progress finish within SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
