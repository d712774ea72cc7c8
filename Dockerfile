# ecr-ptc-webhook: the admission webhook's image.
# build: the wheel (with the pinned build backend), then a venv with it and the pinned dependencies (constraints.txt).
# final: the same slim Python, that venv and a non-root user; nothing that builds or installs packages.

FROM python:3.11.14-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY webhook/ webhook/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --constraint constraints.txt hatchling \
 && /opt/build/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels .
# pip compiles every module to .pyc here, so the read-only root filesystem costs no start-up time later.
# The aws extra (boto3): `rules: discover` and `verify: true` read ECR with the pod's IRSA / Pod Identity role.
RUN python -m venv /opt/venv \
 && set -- /wheels/*.whl \
 && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt "$1[aws]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11.14-slim-trixie
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 65532 webhook \
 && useradd --system --no-log-init --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin webhook
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so the kubelet can check runAsNonRoot. The root filesystem may be read-only: the webhook writes nothing.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["ecr-ptc-webhook"]
CMD ["serve", "--config", "/etc/ecr-ptc-webhook/config.yaml", "--tls-cert", "/etc/ecr-ptc-webhook/tls/tls.crt", "--tls-key", "/etc/ecr-ptc-webhook/tls/tls.key", "--host", "0.0.0.0", "--port", "8443"]
