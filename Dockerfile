# One image for every service, the sandbox and the operator commands:
#   docker build -t loggamera-erasure .
#   docker run --rm loggamera-erasure run newsletter      # ENTRYPOINT is `erasure`: arguments are its command
#   docker run --rm loggamera-erasure retention purge
# Without a registry, deploy/images/build.sh builds a stand-in base from Debian's packages and passes
# PYTHON_IMAGE (and the build host's extra CA certificates) in.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build

# PEM certificates pip must trust besides the image's CA store (a TLS-inspecting proxy on the build host).
# They stay in this stage; the final image trusts only its own store.
ARG EXTRA_CA_CERTS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/erasure
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY schemas ./schemas
COPY services ./services
COPY ops ./ops
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" | cat /etc/ssl/certs/ca-certificates.crt - >/tmp/build-ca.pem \
        && export PIP_CERT=/tmp/build-ca.pem; \
    fi \
 && /opt/erasure/bin/pip install . \
 && rm -f /tmp/build-ca.pem


FROM ${PYTHON_IMAGE}

# A fixed numeric uid, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 erasure \
 && useradd --system --uid 10001 --gid erasure --home-dir /var/lib/erasure --create-home --shell /usr/sbin/nologin erasure

COPY --from=build /opt/erasure /opt/erasure

# Services listen for /metrics, /healthz and /readyz on all interfaces inside the container; var/ (SQLite when
# no database URL is set, the dead-letter replay journal) lives in the user's home, the only writable path.
ENV PATH=/opt/erasure/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ERASURE_HTTP_HOST=0.0.0.0 \
    ERASURE_VAR_DIR=/var/lib/erasure \
    ERASURE_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/erasure

# Liveness of a service (`erasure run <service>`): /healthz on its port, found from the command line of PID 1.
# Anything else (the sandbox, a one-off command) has no health port and counts as healthy while it runs.
# slim has no curl; Python's urllib raises (exit 1) on a refused connection or any status >= 400.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-c", "import sys, urllib.request; from shared.settings import http_port_for; argv = open('/proc/1/cmdline', 'rb').read().decode().split(chr(0)); name = argv[argv.index('run') + 1] if 'run' in argv[:-1] else ''; port = http_port_for(name) if name else 0; port and urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3); sys.exit(0)"]

ENTRYPOINT ["erasure"]
CMD ["--help"]
