# Citizen Vault image: multi-stage, runs as a non-root user, migrations are a separate command.
#   docker build -t citizen-vault .
#   docker run --rm --env-file vault.env citizen-vault vault db upgrade     # once per release
#   docker run -d -p 8000:8000 --env-file vault.env citizen-vault          # the service
# The image defaults to the production profile: it refuses to start until the environment names
# the database, object store, antivirus, keyring/KMS and HTTPS issuer (see README, "Settings").

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/vault
COPY pyproject.toml README.md constraints.txt ./
COPY vault ./vault
RUN /opt/vault/bin/pip install --upgrade pip && /opt/vault/bin/pip install -c constraints.txt .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/vault/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VAULT_ENV=production \
    VAULT_DATA_DIR=/var/lib/vault
# fonts-dejavu-core: the Unicode font the activation letter's PDF embeds.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin vault \
 && mkdir -p /var/lib/vault && chown vault:vault /var/lib/vault && chmod 0700 /var/lib/vault
COPY --from=build /opt/vault /opt/vault
WORKDIR /app
COPY alembic ./alembic
USER vault
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["vault", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--proxy-headers"]
