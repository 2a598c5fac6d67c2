# The API, the workers and the migrations share this one image; docker-compose.yml picks
# the process with `command:`.

# The dashboard, built from the committed lockfile; only its output goes into the image.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web ./
RUN npm run build

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_DIST=/app/web/dist

WORKDIR /app

# Dependencies first, in their own layer: with empty package folders the project installs
# only its requirements, so editing the code does not reinstall them.
COPY pyproject.toml ./
RUN mkdir -p app workers forecast \
    && pip install --no-cache-dir . \
    && pip uninstall --yes telemetry \
    && rm -rf build *.egg-info app workers forecast

COPY app ./app
COPY workers ./workers
COPY forecast ./forecast
# For `python -m scripts.keys` inside the container (the other tools need the tools extra).
COPY scripts ./scripts
COPY migrations ./migrations
COPY alembic.ini ./
COPY --from=web /web/dist ./web/dist
RUN pip install --no-cache-dir --no-deps . && rm -rf build *.egg-info

# A home directory so libraries that cache per user (numba under statsforecast) can write.
RUN useradd --create-home --uid 10001 telemetry
USER telemetry

EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
