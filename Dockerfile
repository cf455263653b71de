# syntax=docker/dockerfile:1
# Deploy Guard's image: build wheels in one stage, install them into a slim runtime stage that
# has no compiler, no source tree and no package manager left, and run as a non-root user.
#
#   docker build -t registry.example.com/deploy-guard:0.1.0 .
#
# The Helm chart (helm/deploy-guard) runs it with a read-only root filesystem: only the data
# directory (/var/lib/deploy-guard) and /tmp are writable, both volumes.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY guard ./guard
COPY analyzers ./analyzers
COPY strategies ./strategies
COPY alerts ./alerts
# The project's wheel and a wheel of every runtime dependency, so the next stage installs
# offline from /wheels and never needs a build tool.
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels deploy-guard \
    && pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 guard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin guard \
    && mkdir -p /var/lib/deploy-guard /etc/deploy-guard \
    && chown 10001:10001 /var/lib/deploy-guard
WORKDIR /var/lib/deploy-guard
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["guard"]
CMD ["serve", "--config", "/etc/deploy-guard/guard.yaml"]
