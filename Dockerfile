# Kensa: one image, two roles (`kensa train` and `kensa serve`), see docker-compose.yml.
#
#   docker build -t kensa .                                  # CPU build of torch (default)
#   docker build -t kensa:cuda --build-arg TORCH_VARIANT=cu128 .   # CUDA build of torch
#
# TORCH_VARIANT picks the PyTorch wheel index (https://download.pytorch.org/whl/<variant>):
# `cpu`, or a CUDA tag such as `cu126` / `cu128` that the torch release in pyproject.toml ships.
# The CUDA wheels carry their own CUDA runtime, so the slim base works with the NVIDIA
# container toolkit; only the host driver is needed.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_WAIT_POLICY=PASSIVE \
    KENSA_HOST=0.0.0.0 \
    KENSA_PORT=8000 \
    KENSA_DATA_DIR=/records

# Non-root user. /models, /records, /labels and /data are created (and owned) here so that a
# fresh named volume mounted on one of them inherits this ownership: the trainer can write its
# bundle, the inspector its records (database, kept images, labels) under KENSA_DATA_DIR.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin kensa \
    && mkdir -p /app /models /records /labels /data \
    && chown kensa:kensa /models /records /labels /data

WORKDIR /app

# Dependency layers: only pyproject.toml is copied, so editing code does not reinstall torch.
# torch comes from the PyTorch index of TORCH_VARIANT; every other dependency from PyPI, with
# the onnx extra (onnx, onnxruntime: about 35 MB of wheels), so the trainer exports the graphs
# (`kensa train --export onnx`) and the inspector serves them on a CPU (KENSA_RUNTIME=auto).
# In the same layer (a later one could not shrink the image), what the wheel ships for C++
# extension builds and its own tests goes: headers, C++ test binaries, protoc (about 190 MB).
# Kensa neither compiles extensions nor uses torch.compile; torch_shm_manager stays.
COPY pyproject.toml /tmp/kensa/pyproject.toml
RUN python -c 'import re, tomllib; project = tomllib.load(open("/tmp/kensa/pyproject.toml", "rb"))["project"]; deps = project["dependencies"]; torch = [d for d in deps if re.split(r"[\s<>=!~;\[]", d)[0] == "torch"]; rest = [d for d in deps if d not in torch] + project["optional-dependencies"]["onnx"]; open("/tmp/kensa/torch.txt", "w").write("\n".join(torch) + "\n"); open("/tmp/kensa/requirements.txt", "w").write("\n".join(rest) + "\n")' \
    && pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/kensa/torch.txt \
    && torch_dir="$(python -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')" \
    && rm -rf "${torch_dir}/include" "${torch_dir}/test" \
    && find "${torch_dir}/bin" -mindepth 1 ! -name torch_shm_manager -delete
RUN pip install -r /tmp/kensa/requirements.txt

# Code layer.
COPY README.md pyproject.toml /app/
COPY models /app/models
COPY service /app/service
RUN pip install --no-deps /app && rm -rf /tmp/kensa /app/build /app/*.egg-info

USER 10001:10001

EXPOSE 8000

# No curl in the slim image: the probe is Python's urllib. Non-2xx raises, so "not ready"
# (model not loaded yet) counts as unhealthy. The code has no whitespace on purpose: podman's
# Docker-compatible API (podman 4.3, Debian 12) splits exec-form healthcheck arguments at
# spaces, which turned the old probe into a SyntaxError (always unhealthy) under docker compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "__import__('urllib.request').request.urlopen('http://127.0.0.1:%s/health/ready'%__import__('os').environ.get('KENSA_PORT','8000'),timeout=4)"]

ENTRYPOINT ["kensa"]
CMD ["serve"]
