# maintainer: scheduled PostgreSQL maintenance for the Parlant tables, run as a sidecar.
# Build: docker build -t maintainer .   Run: docker run -e MAINTAINER_DATABASE_URL=... maintainer

# Build stage: every dependency's wheel at the version and hash requirements.lock pins, then the project's.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock /wheels/requirements.lock
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r /wheels/requirements.lock
COPY pyproject.toml README.md ./
COPY maintainer ./maintainer
COPY jobs ./jobs
COPY config ./config
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Runtime stage: the installed wheels and nothing else (no sources, no build tools, no pip cache).
FROM python:3.11-slim
LABEL org.opencontainers.image.title="maintainer" \
      org.opencontainers.image.description="Scheduled PostgreSQL maintenance for the Parlant agent tables: a pg_cron replacement run as a sidecar" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock \
    && pip install --no-cache-dir --no-index --no-deps /wheels/maintainer-*.whl && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    MAINTAINER_LOG_FORMAT=json \
    MAINTAINER_HTTP_PORT=9477
# A numeric user, so that Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
EXPOSE 9477
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["maintainer", "healthcheck"]
ENTRYPOINT ["maintainer"]
CMD ["run"]
