# broadcaster in a container. Build:  docker build -t broadcaster .
# Run (config.toml, state.toml and message_templates/ in ./etc; secrets from the environment):
#   docker run -d --name broadcaster --stop-timeout 30 \
#     -v "$PWD/etc:/etc/broadcaster:ro" -v broadcaster-data:/var/lib/broadcaster \
#     -e X_CONSUMER_KEY -e X_CONSUMER_SECRET -e X_ACCESS_TOKEN -e X_ACCESS_TOKEN_SECRET \
#     -e X_FR_CONSUMER_KEY -e X_FR_CONSUMER_SECRET -e X_FR_ACCESS_TOKEN \
#     -e X_FR_ACCESS_TOKEN_SECRET -e MASTODON_EN_TOKEN -e MASTODON_FR_TOKEN \
#     -e BROADCASTER_TOKEN -e BROADCASTER_PG_PASSWORD \
#     -p 127.0.0.1:8470:8470 broadcaster
# (the ${NAME}s config.example.toml uses; tests/test_deploy.py keeps them in step)
# config.toml must say data_dir = "/var/lib/broadcaster" and, for the HEALTHCHECK and
# intake to be reachable, [intake.http] listen = "0.0.0.0:8470". See deploy/README.md.
#
# The drafting console is the same image with another command, in its own container: it
# needs the console token and no platform credentials; it writes the state file, so keep
# that file in the shared data volume (state_file = "/var/lib/broadcaster/state.toml"):
#   docker run -d --name broadcaster-console \
#     -v "$PWD/etc:/etc/broadcaster:ro" -v broadcaster-data:/var/lib/broadcaster \
#     -e BROADCASTER_CONSOLE_TOKEN -p 127.0.0.1:8471:8471 broadcaster \
#     broadcaster console --config /etc/broadcaster/config.toml --listen 0.0.0.0:8471

# -- build: a virtualenv with broadcaster and its dependencies ------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/broadcaster
WORKDIR /src
# Dependencies first, from pyproject alone: a code change does not re-download them.
COPY pyproject.toml README.md ./
RUN mkdir broadcaster && touch broadcaster/__init__.py \
    && /opt/broadcaster/bin/pip install . \
    && /opt/broadcaster/bin/pip uninstall -y broadcaster
COPY broadcaster ./broadcaster
RUN /opt/broadcaster/bin/pip install --no-deps . \
    && /opt/broadcaster/bin/broadcaster --help > /dev/null

# -- run ---------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/broadcaster/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1
# A fixed, unprivileged uid: the data volume's ownership stays meaningful across rebuilds.
RUN groupadd --system --gid 10001 broadcaster \
    && useradd --system --uid 10001 --gid broadcaster --no-create-home \
        --home-dir /var/lib/broadcaster --shell /usr/sbin/nologin broadcaster \
    && install -d -o broadcaster -g broadcaster -m 0700 /var/lib/broadcaster \
    && install -d -m 0755 /etc/broadcaster
COPY --from=build /opt/broadcaster /opt/broadcaster
USER broadcaster:broadcaster
WORKDIR /var/lib/broadcaster
# The store (SQLite, WAL) and the dry-run journal: losing it means re-posting, so a volume.
VOLUME ["/var/lib/broadcaster"]
EXPOSE 8470 8471
# /healthz answers 503 when the scheduler or a delivery worker died or the store is
# unreadable. BROADCASTER_HEALTH_URL overrides the address; no proxy is ever consulted.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ.get('BROADCASTER_HEALTH_URL', 'http://127.0.0.1:8470/healthz'), timeout=4)"]
# SIGTERM lets each channel's post in flight finish (up to its 10 s timeout): stop with
# `docker stop -t 30` (compose: stop_grace_period: 30s) so Docker does not SIGKILL first.
STOPSIGNAL SIGTERM
CMD ["broadcaster", "run", "--config", "/etc/broadcaster/config.toml"]
