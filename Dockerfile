# maintainer: scheduled PostgreSQL maintenance for the Parlant tables, run as a sidecar.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY maintainer ./maintainer
COPY jobs ./jobs
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
# Only the wheels built above are installed: the versions were resolved once, in the build stage.
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/maintainer-*.whl && rm -rf /wheels
USER 10001:10001
ENTRYPOINT ["maintainer"]
CMD ["run"]
