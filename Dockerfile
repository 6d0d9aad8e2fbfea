# syntax=docker/dockerfile:1
# The operator image: `make docker-build IMG=...`.
#
# Two stages on Red Hat's UBI Python: the first builds wheels of the project and its dependencies, the second
# installs them into the image's virtualenv (/opt/app-root) and carries no build tools or sources. The result
# runs as the unprivileged user 1001 (any UID in group 0 on OpenShift) and writes nothing outside /tmp, so it
# works with readOnlyRootFilesystem (config/manager mounts an emptyDir on /tmp).
ARG PYTHON_IMAGE=registry.access.redhat.com/ubi9/python-311:9.5-1730564330

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /opt/app-root/src
COPY --chown=1001:0 pyproject.toml README.md ./
COPY --chown=1001:0 api ./api
COPY --chown=1001:0 controller ./controller
RUN pip wheel --no-cache-dir --wheel-dir /tmp/wheels .

FROM ${PYTHON_IMAGE}
LABEL name="external-secrets-operator" \
      summary="Installs external-secrets and restricts its network traffic with NetworkPolicies" \
      description="Installs the external-secrets operand and locks its network down with NetworkPolicies." \
      io.k8s.display-name="External Secrets Operator" \
      io.openshift.tags="external-secrets,secrets,network-policy"
# pip compiles bytecode at install time; at run time nothing is written next to the code.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN --mount=type=bind,from=builder,source=/tmp/wheels,target=/tmp/wheels \
    pip install --no-cache-dir --no-index --find-links /tmp/wheels external-secrets-operator
USER 1001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "controller"]
