"""The scale-out deployment files agree with the settings, the server and each other: the
compose `scale` profile (docker-compose.yml, docker-compose.scale.yml), the nginx config
(deploy/nginx/kensa.conf.template) and the Kubernetes manifests (deploy/k8s/).

Like tests/test_deploy.py, nothing here runs a container; nginx itself checks its config
(``nginx -t``) where it is installed, and a compose v2 client resolves the files where it is.
tests/service/test_replicas.py runs the nginx config for real in front of two servers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from nginx_server import TEMPLATE, need_nginx, write_config
from test_deploy import (
    COMPOSE,
    COMPOSE_CPU,
    HEALTH_PATH,
    ROOT,
    _compose_config,
    _openapi,
    cli_help,
    interpolate,
    load_compose,
    settings_class,
    settings_env_names,
)

COMPOSE_SCALE = ROOT / "docker-compose.scale.yml"
K8S = ROOT / "deploy" / "k8s"
LIVE_PATH = "/health/live"


def nginx_directive(name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", TEMPLATE.read_text(), flags=re.MULTILINE)


def seconds(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


def settings():
    return settings_class()()


# --- compose ----------------------------------------------------------------------------


def test_the_balancer_is_nginx_in_the_scale_profile_with_the_repository_config():
    services = load_compose()["services"]
    balancer = services["balancer"]
    assert balancer["profiles"] == ["scale"]
    assert balancer["image"].startswith("nginx:")
    (mount,) = balancer["volumes"]
    assert ROOT / mount["source"] == TEMPLATE and mount["read_only"] is True
    assert mount["target"] == "/etc/nginx/templates/default.conf.template"
    assert balancer["depends_on"]["inspector"]["condition"] == "service_healthy"
    assert "scale" in services["postgres"]["profiles"]
    assert "profiles" not in services["inspector"]  # the plain deployment is unchanged


@pytest.mark.parametrize("env", [{}, {"KENSA_PORT": "9000", "KENSA_LB_PORT": "9090"}])
def test_nginx_forwards_to_the_port_the_inspectors_listen_on(env):
    services = interpolate(load_compose()["services"], env)
    balancer, inspector = services["balancer"], services["inspector"]
    assert balancer["environment"]["KENSA_PORT"] == inspector["environment"]["KENSA_PORT"]
    assert "KENSA" in balancer["environment"]["NGINX_ENVSUBST_FILTER"]
    (upstream,) = re.findall(r"server inspector:(\$\{\w+\})", TEMPLATE.read_text())
    assert upstream == "${KENSA_PORT}"
    (listen,) = nginx_directive("listen")
    (mapping,) = balancer["ports"]
    host, container = mapping.split(":")
    assert container == listen and host == env.get("KENSA_LB_PORT", "8080")


def test_the_balancer_healthcheck_goes_through_nginx_to_readiness():
    probe = load_compose()["services"]["balancer"]["healthcheck"]["test"]
    (listen,) = nginx_directive("listen")
    assert probe[0] == "CMD" and probe[-1] == f"http://127.0.0.1:{listen}{HEALTH_PATH}"


def test_the_scale_override_frees_the_port_and_shares_postgres():
    scale = yaml.safe_load(COMPOSE_SCALE.read_text().replace("!reset", ""))
    inspector = scale["services"]["inspector"]
    assert "!reset []" in COMPOSE_SCALE.read_text()  # replicas publish no host port
    url = interpolate(inspector["environment"]["KENSA_DATABASE_URL"])
    postgres = load_compose()["services"]["postgres"]["environment"]
    user, db = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    assert url == f"postgresql+psycopg://{user}:change-me@postgres/{db}"
    assert inspector["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_resolves_the_scaled_deployment(tmp_path):
    services = _compose_config([COMPOSE, COMPOSE_CPU, COMPOSE_SCALE],
                               {"KENSA_PORT": "9000", "COMPOSE_PROFILES": "scale"},
                               tmp_path)["services"]
    assert not services["inspector"].get("ports")
    assert services["inspector"]["environment"]["KENSA_DATABASE_URL"].endswith("@postgres/kensa")
    assert services["balancer"]["environment"]["KENSA_PORT"] == "9000"


# --- nginx ------------------------------------------------------------------------------


def test_nginx_takes_every_body_kensa_takes():
    from service.middleware import BodyLimitMiddleware

    s = settings()
    largest = BodyLimitMiddleware(None, s.max_upload_bytes, s.max_batch, s.body_timeout_s).batch
    (limit,) = nginx_directive("client_max_body_size")
    assert limit.endswith("m")
    allowed = int(limit[:-1]) * 1024 * 1024
    assert largest <= allowed <= largest * 1.01


def test_nginx_deadlines_match_kensas():
    s = settings()
    (header,) = nginx_directive("client_header_timeout")
    (body,) = nginx_directive("client_body_timeout")
    (read,) = nginx_directive("proxy_read_timeout")
    assert seconds(header) == s.header_timeout_s and seconds(body) == s.body_timeout_s
    assert seconds(read) > s.body_timeout_s


def test_nginx_accepts_the_config(tmp_path):
    binary = need_nginx()
    conf = write_config(tmp_path, ["127.0.0.1:8000"], 8080)
    proc = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(conf)],
                          check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


# --- Kubernetes ---------------------------------------------------------------------------


def manifests() -> dict[tuple[str, str], dict]:
    """(kind, name) -> document, of every manifest in deploy/k8s."""
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[(doc["kind"], doc.get("metadata", {}).get("name", path.name))] = doc
    return out


def pod(kind: str, name: str) -> dict:
    return manifests()[(kind, name)]["spec"]["template"]["spec"]


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_settings_are_real_settings_and_the_secret_holds_the_secrets():
    names = settings_env_names(settings_class())
    config = manifests()[("ConfigMap", "kensa-settings")]["data"]
    secret = manifests()[("Secret", "kensa-secrets")]["stringData"]
    assert set(config) | set(secret) <= set(names)
    assert {"KENSA_DATABASE_URL", "KENSA_API_KEYS"} <= set(secret)
    assert not {"KENSA_DATABASE_URL", "KENSA_API_KEYS", "KENSA_BUNDLE_KEY"} & set(config)
    assert all(isinstance(v, str) for v in [*config.values(), *secret.values()])
    settings_class()(**{k.removeprefix("KENSA_").lower(): v
                        for k, v in (config | secret).items()})  # they validate


def test_probes_hit_the_health_endpoints_on_the_served_port():
    spec = _openapi()
    (container,) = pod("Deployment", "kensa-inspector")["containers"]
    config = manifests()[("ConfigMap", "kensa-settings")]["data"]
    (port,) = container["ports"]
    assert port["containerPort"] == int(config["KENSA_PORT"]) == settings().port
    assert config["KENSA_HOST"] == "0.0.0.0"
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == (HEALTH_PATH, LIVE_PATH)
    assert ready["port"] == live["port"] == port["name"]
    assert "get" in spec["paths"][HEALTH_PATH] and "get" in spec["paths"][LIVE_PATH]
    assert container["args"] == ["serve"]


def test_the_service_reaches_the_inspector_pods():
    service = manifests()[("Service", "kensa-inspector")]["spec"]
    deployment = manifests()[("Deployment", "kensa-inspector")]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"] == labels
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    (container,) = deployment["template"]["spec"]["containers"]
    assert port["targetPort"] == container["ports"][0]["name"]


def test_the_trainer_job_writes_a_version_of_the_part_the_inspectors_serve():
    (trainer,) = pod("Job", "kensa-trainer")["containers"]
    args = trainer["args"]
    config = manifests()[("ConfigMap", "kensa-settings")]["data"]
    assert "KENSA_MODEL" not in config  # the models root, not one bundle
    assert args[0] == "train"
    out = Path(args[args.index("--out") + 1])
    assert out == Path(config["KENSA_MODELS_DIR"]) / config["KENSA_DEFAULT_MODEL"]
    # the trainer reads the same settings: --out is a part of KENSA_MODELS_DIR, so a run
    # adds a version there (service.registry.is_part_folder) instead of rewriting a bundle
    from service.registry import is_part_folder

    assert is_part_folder(out, Path(config["KENSA_MODELS_DIR"]))
    refs = {r["configMapRef"]["name"] for r in trainer["envFrom"] if "configMapRef" in r}
    assert "kensa-settings" in refs
    text = cli_help("train")
    for option in (a for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), option
    assert pod("Job", "kensa-trainer")["restartPolicy"] == "Never"


def test_every_claim_mounted_exists_and_the_inspectors_can_activate():
    claims = {name for kind, name in manifests() if kind == "PersistentVolumeClaim"}
    assert {"kensa-models", "kensa-records"} <= claims
    config = manifests()[("ConfigMap", "kensa-settings")]["data"]
    for kind, name in [("Deployment", "kensa-inspector"), ("Job", "kensa-trainer")]:
        spec = pod(kind, name)
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/models"]["name"]] == "kensa-models"
        assert volumes[mounts[config["KENSA_DATA_DIR"]]["name"]] == "kensa-records"
        assert config["KENSA_MODELS_DIR"] == "/models"
    # an activation through any replica rewrites PART/active: the models claim is writable
    inspector = pod("Deployment", "kensa-inspector")
    mounts = {m["mountPath"]: m for m in inspector["containers"][0]["volumeMounts"]}
    assert not mounts["/models"].get("readOnly", False)
    claims = {v["name"]: v["persistentVolumeClaim"] for v in inspector["volumes"]}
    assert not claims[mounts["/models"]["name"]].get("readOnly", False)


def test_pods_run_as_the_image_user_and_stop_after_kensa_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+)", dockerfile, re.MULTILINE).group(1))
    for kind, name in [("Deployment", "kensa-inspector"), ("Job", "kensa-trainer")]:
        assert pod(kind, name)["securityContext"]["fsGroup"] == uid
    grace = pod("Deployment", "kensa-inspector")["terminationGracePeriodSeconds"]
    assert grace > settings().shutdown_timeout_s


def test_the_autoscaler_scales_the_inspectors_on_cpu():
    hpa = manifests()[("HorizontalPodAutoscaler", "kensa-inspector")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "kensa-inspector"}
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (container,) = pod("Deployment", "kensa-inspector")["containers"]
    assert "cpu" in container["resources"]["requests"]  # utilization is a share of it
