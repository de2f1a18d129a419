# The code location's image: the orderspace-pipelines package and Dagster (the webserver and daemon are part of
# its dependencies, so docker-compose.yaml runs every Dagster service from this one image with another command).
# No secret is baked in: credentials and the database URL come from the environment at run time
# (deploy/.env.example lists them). Build from the repository root: docker build -t orderspace-pipelines .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ORDERSPACE_DATA_DIR=/data

# An unprivileged user owns only what it writes: the lake volume and Dagster's local storage.
RUN groupadd --system --gid 10001 orderspace \
    && useradd --system --uid 10001 --gid orderspace --home-dir /opt/dagster --shell /usr/sbin/nologin orderspace

WORKDIR /opt/dagster/app
# The product only (its wheel ships orderspace_pipelines; the sandbox and dev tools stay out).
COPY pyproject.toml README.md ./
COPY orderspace_pipelines ./orderspace_pipelines
RUN pip install . && rm -rf /opt/dagster/app/build

# The deployment's instance (Postgres storage, pools, no telemetry) and workspace (the gRPC code server).
COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/
RUN mkdir -p /data /opt/dagster/dagster_home/storage \
    && chown -R orderspace:orderspace /data /opt/dagster/dagster_home/storage

USER orderspace
WORKDIR /opt/dagster
EXPOSE 4000

# The code location answers Dagster's gRPC ping; the other services override this in docker-compose.yaml.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "--host", "127.0.0.1", "--port", "4000"]
STOPSIGNAL SIGTERM

# The code-location gRPC server (what the webserver, the daemon and the run launcher talk to).
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "orderspace_pipelines.definitions", "--location-name", "orderspace_pipelines"]
