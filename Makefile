# The external-secrets operator. `make run` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KUBECONFIG_ENVTEST ?= $(CURDIR)/.envtest/kubeconfig

.PHONY: all venv test test-unit test-integration test-e2e lint fmt typecheck bench run manifests bundle verify docker-build bundle-build clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

venv: $(STAMP)

## test: unit and integration tests (the in-process API server); needs nothing but Python.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/integration

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

## test-e2e: the integration tests against the cluster in KUBECONFIG instead of the in-process API server.
test-e2e: $(STAMP)
	USE_EXISTING_CLUSTER=true $(PY) -m pytest -q tests/integration

lint: $(STAMP)
	$(PY) -m ruff check api controller tests hack
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format api controller tests hack
	$(PY) -m ruff check --fix api controller tests hack

## manifests: regenerate config/crd/bases from the API models (api/v1alpha1); `hack/gen_crd.py --check` verifies.
manifests: $(STAMP)
	$(PY) hack/gen_crd.py

bench: $(STAMP)
	$(PY) -m hack.bench

## run: the operator on your cluster (KUBECONFIG, ~/.kube/config), else on an in-process API server whose
## kubeconfig is KUBECONFIG_ENVTEST. ENVTEST=true forces the latter; METRICS_ADDR, PROBE_ADDR move the ports.
METRICS_ADDR ?= :8080
PROBE_ADDR ?= :8081
run: $(STAMP)
	$(PY) hack/run.py --envtest-kubeconfig=$(KUBECONFIG_ENVTEST) --metrics-bind-address=$(METRICS_ADDR) \
		--health-probe-bind-address=$(PROBE_ADDR) $(if $(filter true 1 yes,$(ENVTEST)),--envtest)

## Shipping: the operator image, the OLM bundle, and the consistency checks of both.
CONTAINER_TOOL ?= docker
IMG ?= quay.io/external-secrets-operator/external-secrets-operator:v0.1.0
BUNDLE_IMG ?= quay.io/external-secrets-operator/external-secrets-operator-bundle:v0.1.0

## bundle: regenerate bundle/ and bundle.Dockerfile from config/ (needs the CRD from `make manifests`).
bundle: $(STAMP)
	$(PY) -m hack.bundle

## verify: the bundle is up to date and config/ and bundle/ are consistent.
verify: $(STAMP)
	$(PY) -m hack.verify

docker-build:
	$(CONTAINER_TOOL) build -t $(IMG) .

bundle-build:
	$(CONTAINER_TOOL) build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

clean:
	rm -rf $(VENV) .envtest build dist *.egg-info
