# Container image for the agent (the Helm chart under deploy/helm runs it).
#
#   docker build -t finops-agent:dev .
#
# Two stages on one pinned base (the tag and the digest of its multi-architecture index; Docker pulls the digest):
#   builder: wheels of the exact versions in requirements.lock, each checked against its hashes, and the project's own;
#   runtime: installs those wheels only (--no-index: nothing fetched), no compilers, a non-root user (10001:10001),
#            everything it writes under /var/lib/finops-agent and /tmp, the volumes the Helm chart mounts under a
#            read-only root filesystem.
# The lock is written by `make lock` (Linux x86_64, CPython 3.11; the runtime dependencies and the kafka, aws and
# azure extras). Tests: tests/deploy/test_dockerfile.py.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first (a layer that a change to the code leaves cached): every locked package as a wheel, each
# download checked against the lock's hashes. All of them ship manylinux wheels for CPython 3.11 on x86_64, so
# nothing is compiled here either.
COPY requirements.lock ./
RUN pip wheel --require-hashes --only-binary=:all: -r requirements.lock -w /wheels
# Then the project's wheel (its dependencies are the locked ones above: --no-deps), built with the locked build
# backend and no build isolation (which would fetch an unpinned setuptools).
COPY requirements-build.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements-build.lock
COPY pyproject.toml README.md LICENSE ./
COPY agent agent
COPY detectors detectors
COPY sinks sinks
COPY config config
RUN pip wheel --no-build-isolation --no-deps -w /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="finops-agent" \
      org.opencontainers.image.description="FinOps Anomaly Agent: streaming cost, token and GPU anomaly detection" \
      org.opencontainers.image.licenses="Apache-2.0"
# The wheels only: no index, no build, the same lock (its hashes checked again on install).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/src/requirements.lock,target=/tmp/requirements.lock \
    pip install --no-cache-dir --no-index --find-links=/wheels --require-hashes -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-index --no-deps --find-links=/wheels finops-agent \
    && groupadd --gid 10001 finops \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/finops-agent --no-create-home --shell /usr/sbin/nologin finops \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/finops-agent \
    && finops-agent --help > /dev/null

# Everything the agent writes goes under the two volumes: the state store and dead letters (FINOPS_STATE_DIR), the
# embedded default's demo month (FINOPS_DEMO_DIR) and its watched inboxes (FINOPS_INBOX), a relative path of a config
# (the working directory), HOME (the user's home); s3_export / azure_export download to the system temp dir, /tmp.
# Metrics (and /healthz, /readyz) listen on every interface of the container, port 9464.
ENV FINOPS_STATE_DIR=/var/lib/finops-agent \
    FINOPS_DEMO_DIR=/var/lib/finops-agent/demo-data \
    FINOPS_INBOX=/var/lib/finops-agent/inbox \
    FINOPS_METRICS_ADDRESS=0.0.0.0 \
    FINOPS_METRICS_PORT=9464 \
    FINOPS_HTTP_ADDRESS=0.0.0.0 \
    HOME=/var/lib/finops-agent \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/finops-agent", "/tmp"]
WORKDIR /var/lib/finops-agent
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["finops-agent"]
CMD ["run"]
