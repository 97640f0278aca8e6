# The gateway image and the command shim for agent containers (docs/deploy.md).
#
# Targets:
#   gateway     `gateway up` as an unprivileged user (the last stage: the default)
#   shim-build  compiles the shim against the agent image (AGENT_BASE), so the real
#               programs it copies match that image's C library
#   shim        a small image holding /opt/gateway (the shim and those copies), which
#               compose publishes into the gateway-shim volume the agents mount
#   agent       the example agent: AGENT_BASE with an unprivileged user
#
# Build arguments:
#   PYTHON_IMAGE  the gateway's base (Python 3.12, so mitmproxy 12)
#   AGENT_BASE    the agents' image; the shim must be built from the image it runs in
#   GATEWAY_API   the decision API as the shim reaches it: an address, never a name
#   SHIM_POLICY   the policy whose shell_exec rules name the programs to shim
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG AGENT_BASE=python:3.12-slim-bookworm

# --- the shim, compiled in the agents' image ------------------------------------------
FROM ${AGENT_BASE} AS shim-build
ARG GATEWAY_API=tcp:172.30.0.2:8081
ARG SHIM_POLICY=policies/team.yaml
USER root
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler and Python only where the image lacks them; this stage is thrown away.
RUN set -eu; need=""; \
    command -v gcc >/dev/null || need="$need gcc libc6-dev"; \
    python3 -c 'import ensurepip' 2>/dev/null || need="$need python3 python3-venv"; \
    if [ -n "$need" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $need \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY pyproject.toml README.md /tmp/gateway-src/
COPY gateway/ /tmp/gateway-src/gateway/
COPY policies/ /tmp/gateway-src/policies/
# gateway lives in a virtual environment off PATH, so only the image's own programs
# are shimmed and copied (--path is the agents' PATH without the shim directory). The
# copies lose any setuid bit (su, mount) and nobody but root may write them.
RUN python3 -m venv /tmp/gateway-venv \
    && /tmp/gateway-venv/bin/pip install --no-cache-dir /tmp/gateway-src \
    && /tmp/gateway-venv/bin/gateway shim install /opt/gateway/shim \
       --api "$GATEWAY_API" --policy "/tmp/gateway-src/$SHIM_POLICY" \
       --real-dir /opt/gateway/real \
       --path /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    && /tmp/gateway-venv/bin/gateway shim check /opt/gateway/shim \
    && chmod -R u-s,g-s,go-w /opt/gateway \
    && rm -rf /tmp/gateway-venv /tmp/gateway-src

# --- the shim, ready to publish -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS shim
COPY --from=shim-build /opt/gateway/ /opt/gateway/
COPY --chmod=0755 docker/publish-shim.sh /usr/local/bin/publish-shim
ENTRYPOINT ["/usr/local/bin/publish-shim"]
CMD ["/out"]

# --- the example agent ----------------------------------------------------------------
FROM ${AGENT_BASE} AS agent
USER root
RUN groupadd --gid 1000 agent \
    && useradd --uid 1000 --gid agent --create-home --shell /bin/bash agent \
    && mkdir -p /work && chown agent:agent /work
USER agent:agent
WORKDIR /work
CMD ["sleep", "infinity"]

# --- the gateway ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_STATE_DIR=/var/lib/gateway/state \
    GATEWAY_CA_PUBLIC_DIR=/var/lib/gateway/ca-public
COPY pyproject.toml README.md /tmp/gateway-src/
COPY gateway/ /tmp/gateway-src/gateway/
RUN pip install --no-cache-dir /tmp/gateway-src "mitmproxy>=12.0,<13" \
    && rm -rf /tmp/gateway-src
COPY policies/ /etc/gateway/policies/
COPY addons/ /usr/local/share/gateway/addons/
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/gateway-entrypoint
COPY --chmod=0755 docker/healthcheck.sh /usr/local/bin/gateway-healthcheck
# The state directory (CA key, sockets), the audit log and the published CA certificate
# belong to the gateway's own user; named volumes mounted there inherit this ownership.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
       --home-dir /var/lib/gateway --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/gateway/state /var/lib/gateway/audit /var/lib/gateway/ca-public \
       /etc/gateway/agents \
    && chown gateway:gateway /var/lib/gateway/state /var/lib/gateway/audit \
       /var/lib/gateway/ca-public \
    && chmod 0711 /var/lib/gateway/state \
    && chmod 0700 /var/lib/gateway/audit \
    && chmod 0755 /var/lib/gateway/ca-public
USER gateway:gateway
WORKDIR /var/lib/gateway
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --start-interval=1s --retries=3 \
    CMD ["/usr/local/bin/gateway-healthcheck"]
ENTRYPOINT ["/usr/local/bin/gateway-entrypoint"]
CMD ["up", "--policy", "/etc/gateway/policies/default.yaml", "--listen", "0.0.0.0:8080"]
