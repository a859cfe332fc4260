"""Deployment files agree with the code: image, settings, commands, Serve config, metrics.

Nothing here can be applied to a cluster on a developer machine, so these checks are what keeps
``deploy/``, ``ray-cluster.yaml`` and the Grafana dashboard from drifting away from the product.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from aml.settings import Settings
from fineract_aml.cli import build_parser
from serve.scoring.deploy import GRPC_TRANSPORT_ENV, use_grpc_transport

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "ghcr.io/fineract-aml/fineract-aml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
SERVE_CONFIG = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every manifest (multi-document YAML), with its file name."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
            out.append((path.name, doc))
    return out


DOCS = k8s_docs()


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside ``node`` (depth first)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, m)
        for name, doc in DOCS
        for m in walk(doc)
        if "image" in m and "name" in m and isinstance(m.get("image"), str)
    ]


def kind(k: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc.get("kind") == k]


SETTINGS_VARS = {f"AML_{name.upper()}": f for name, f in Settings.model_fields.items()}


def is_secret(var: str) -> bool:
    return SETTINGS_VARS[var].annotation in (SecretStr, SecretStr | None)


# --- every file parses, every resource is namespaced and listed ------------------------------


def test_every_manifest_has_api_version_kind_and_name() -> None:
    assert DOCS
    for name, doc in DOCS:
        if doc.get("kind") == "Kustomization":
            continue
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc["metadata"]["name"].startswith("fineract-aml"), name
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "fineract-aml", name


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    (kust,) = kind("Kustomization")
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.template.yaml"}


# --- image ------------------------------------------------------------------------------------


def test_every_container_runs_the_one_image_at_the_project_version() -> None:
    images = {c["image"] for _, c in containers()}
    assert images == {f"{IMAGE}:{VERSION}"}
    assert f"-t {IMAGE}:{VERSION} " in (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_is_multi_stage_pinned_non_root_and_ships_every_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+)\.(\d+)\.(\d+)-slim-\w+$", text, re.M)
    assert base, "the base image must be pinned to a patch release"
    minimum = re.match(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None
    assert (int(base[1]), int(base[2])) >= (int(minimum[1]), int(minimum[2]))
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert f"COPY {package.rstrip('*')} " in text, package


def test_pods_run_as_the_image_user_without_privileges() -> None:
    for name, doc in DOCS:
        for m in walk(doc):
            if "containers" in m and "securityContext" in m:
                assert m["securityContext"]["runAsNonRoot"] is True, name
                assert m["securityContext"]["runAsUser"] == 10001, name
    for name, c in containers():
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name


# --- configuration ----------------------------------------------------------------------------


def test_every_aml_variable_is_a_setting_and_secrets_stay_in_secrets() -> None:
    (config,) = kind("ConfigMap")
    for var in config["data"]:
        assert var in SETTINGS_VARS, f"ConfigMap sets unknown {var}"
        assert not is_secret(var), f"{var} is a secret: it belongs in the Secret"
    assert config["data"]["AML_ENV"] == "production"
    secret_keys: set[str] = set()
    for secret in kind("Secret"):
        for var, value in secret["stringData"].items():
            assert value.startswith("<") or "<" in value, f"{var} must be a placeholder"
            secret_keys.add(var)
    for var in secret_keys - {"auth_token"}:
        assert var in SETTINGS_VARS, f"Secret sets unknown {var}"
    required = {v for v in SETTINGS_VARS if is_secret(v)}
    assert required <= secret_keys, f"no place for {required - secret_keys}"
    for name, c in containers():
        for env in c.get("env", []):
            if env["name"].startswith("AML_"):
                assert env["name"] in SETTINGS_VARS, (name, env["name"])
        refs = {ref[k]["name"] for ref in c.get("envFrom", []) for k in ref}
        assert refs == {"fineract-aml-config", "fineract-aml-secrets"}, name


def test_no_secret_value_appears_outside_the_template() -> None:
    for path in K8S.glob("*.yaml"):
        if path.name == "secret.template.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            for m in walk(doc):
                for key, value in m.items():
                    if key in SETTINGS_VARS and is_secret(key):
                        pytest.fail(f"{path.name} sets {key} to {value!r}")


def test_ray_token_reaches_every_ray_client() -> None:
    (service,) = kind("RayService")
    auth = service["spec"]["rayClusterConfig"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "fineract-aml-ray-token"}
    token_secret = next(s for s in kind("Secret") if s["metadata"]["name"] == auth["secretName"])
    assert "auth_token" in token_secret["stringData"]
    for d in kind("Deployment"):
        (c,) = d["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": auth["secretName"], "key": "auth_token"}


def test_ingress_joins_the_rayservice_head_through_ray_client() -> None:
    (config,) = kind("ConfigMap")
    (service,) = kind("RayService")
    address = config["data"]["AML_RAY_ADDRESS"]
    head_svc = f"{service['metadata']['name']}-head-svc"
    assert address == f"ray://{head_svc}.{service['metadata']['namespace']}.svc:10001"
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in head["containers"][0]["ports"]}
    assert ports["client"] == 10001


# --- commands ---------------------------------------------------------------------------------


def test_container_commands_are_cli_commands() -> None:
    parser = build_parser()
    commands = [c["command"] for _, c in containers() if "command" in c]
    assert ["fineract-aml", "serve-ingress"] in commands
    assert ["fineract-aml", "serve-ui"] in commands
    for cmd in commands:
        assert cmd[0] == "fineract-aml"
        parser.parse_args(cmd[1:])  # exits (fails the test) on an unknown command


def test_probes_point_at_real_endpoints_and_ports() -> None:
    for d in kind("Deployment"):
        (c,) = d["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            spec = c.get(probe)
            if spec is None:
                continue
            target = spec.get("httpGet") or spec.get("tcpSocket")
            assert target["port"] in port_names
            if "httpGet" in spec:
                assert spec["httpGet"]["path"].split("?")[0] in {"/healthz", "/readyz"}


def test_ingress_is_separately_scalable() -> None:
    hpa = {h["spec"]["scaleTargetRef"]["name"]: h for h in kind("HorizontalPodAutoscaler")}
    deployments = {d["metadata"]["name"]: d for d in kind("Deployment")}
    assert "fineract-aml-ingress" in hpa and "fineract-aml-ingress" in deployments
    assert hpa["fineract-aml-ingress"]["spec"]["minReplicas"] >= 2
    services = {s["spec"]["selector"]["app.kubernetes.io/name"] for s in kind("Service")}
    for d in deployments.values():
        assert d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] in services


# --- the Serve application --------------------------------------------------------------------


def serve_v2() -> dict[str, Any]:
    (service,) = kind("RayService")
    parsed: dict[str, Any] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return parsed


def test_serve_config_v2_is_the_shipped_application_with_its_user_configs() -> None:
    (shipped,) = SERVE_CONFIG["applications"]
    (k8s,) = serve_v2()["applications"]
    for key in ("name", "import_path", "route_prefix", "logging_config", "runtime_env"):
        assert k8s.get(key) == shipped.get(key), key
    assert set(k8s["args"]) == set(shipped["args"])
    assert "mongodb_uri" not in k8s["args"]  # from the Secret, never in a manifest
    ours = {d["name"]: d for d in k8s["deployments"]}
    theirs = {d["name"]: d for d in shipped["deployments"]}
    assert ours.keys() == theirs.keys()
    for name, dep in theirs.items():
        assert ours[name].get("user_config") == dep.get("user_config"), name


def test_serve_config_v2_sizes_every_deployment() -> None:
    (k8s,) = serve_v2()["applications"]
    for dep in k8s["deployments"]:
        scaling = dep.get("autoscaling_config")
        assert scaling or dep.get("num_replicas"), dep["name"]
        if scaling:
            assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
        assert dep["ray_actor_options"]["num_cpus"] > 0
    (service,) = kind("RayService")
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] in PYPROJECT["project"]["dependencies"][0]
    (workers,) = cluster["workerGroupSpecs"]
    assert 1 <= workers["minReplicas"] <= workers["maxReplicas"]
    worker_cpu = float(workers["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    biggest = max(d["ray_actor_options"]["num_cpus"] for d in k8s["deployments"])
    assert biggest <= worker_cpu  # every replica fits on one worker


# --- cluster launcher -------------------------------------------------------------------------


def test_cluster_launcher_installs_like_ci_and_deploys_the_serve_config() -> None:
    cfg = yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "auth", "setup_commands", "head_start_ray_commands"):
        assert key in cfg, key
    assert cfg["provider"]["type"] == "local"
    assert cfg["provider"]["head_ip"] and cfg["provider"]["worker_ips"]
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"\$\(BIN\)/pip (install --quiet -e \S+)", makefile)
    assert install is not None
    setup = "\n".join(cfg["setup_commands"])
    assert f".venv/bin/pip {install[1]}" in setup
    head = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head
    worker = " ".join(cfg["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:" in worker
    parser = build_parser()
    for line in [*cfg["head_start_ray_commands"], *cfg["worker_start_ray_commands"]]:
        words = shlex.split(line.split("&&")[-1])
        if any(w.endswith("fineract-aml") for w in words):
            at = next(i for i, w in enumerate(words) if w.endswith("fineract-aml"))
            parser.parse_args(words[at + 1 :])


def test_both_provider_variants_pass_rays_cluster_config_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "ray-cluster.yaml").read_text()
    validate_config(prepare_config(yaml.safe_load(text)))  # local/on-prem, as `ray up` does

    # The commented cloud variant replaces the provider block; the rest is shared.
    start, end = text.index("# provider:\n#   type: aws"), text.index("\nauth:")
    lines = text[start:end].splitlines()
    aws = yaml.safe_load("\n".join(ln[2:] if ln.startswith("# ") else "" for ln in lines))
    assert aws["provider"]["type"] == "aws"
    cfg = {**yaml.safe_load(text), **aws, "max_workers": 6}
    # fields `ray up` fills in (it would also ask AWS for instance types, not possible here)
    validate_config({"cluster_synced_files": [], "rsync_filter": [], **cfg})
    assert aws["head_node_type"] in aws["available_node_types"]


# --- metrics ----------------------------------------------------------------------------------


def defined_metrics() -> set[str]:
    """Series names the code exports: ingress ones as is, Serve ones with Ray's prefix."""
    ingress = re.findall(r'"(aml_[a-z_]+)"', (ROOT / "serve" / "metrics.py").read_text())
    scoring = re.findall(
        r'"(aml_[a-z_]+)"', (ROOT / "serve" / "scoring" / "metrics.py").read_text()
    )
    return {n.removesuffix("_total") for n in ingress} | {f"ray_{n}" for n in scoring}


def test_grafana_dashboard_only_queries_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "fineract-aml.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for e in exprs
        for name in re.findall(r"\b((?:ray_)?aml_[a-z_]+)\b", e)
    }
    assert used - defined_metrics() == set()
    operators_ask_for = {
        "aml_ingest_events",  # ingest rate
        "aml_ingest_ack_seconds",
        "aml_ingest_batch_size",
        "aml_ingest_spool_bytes",
        "ray_aml_scoring_stage_seconds",  # latency per scorer
        "ray_aml_scoring_batch_size",
        "ray_aml_scoring_decisions",  # decisions per minute
        "ray_aml_scoring_alerting_decisions",  # alerts per minute
        "ray_aml_state_actors_alive",
        "ray_aml_state_entries",
        "ray_aml_state_order_skipped",  # batches lost between the hand-off and the shards
    }
    assert operators_ask_for <= used


def test_run_deploys_the_serve_config_in_the_configured_time_zone() -> None:
    from serve.scoring.deploy import with_settings

    settings = Settings(env="test", timezone="Africa/Nairobi", mongodb_db="aml_x")
    config = with_settings(SERVE_CONFIG, settings)
    [app] = config["applications"]
    pipeline = next(d for d in app["deployments"] if d["name"] == "ScoringPipeline")
    assert pipeline["user_config"]["features"]["timezone"] == "Africa/Nairobi"
    assert (
        pipeline["user_config"]["policy"]
        == next(
            d
            for d in SERVE_CONFIG["applications"][0]["deployments"]
            if d["name"] == "ScoringPipeline"
        )["user_config"]["policy"]
    )
    assert app["args"]["mongodb_db"] == "aml_x"


def test_rayservice_scores_in_the_time_zone_the_ingress_explains_alerts_in() -> None:
    (app,) = serve_v2()["applications"]
    pipeline = next(d for d in app["deployments"] if d["name"] == "ScoringPipeline")
    [configmap] = [doc for doc in kind("ConfigMap") if "AML_TIMEZONE" in doc.get("data", {})]
    assert pipeline["user_config"]["features"]["timezone"] == configmap["data"]["AML_TIMEZONE"]


def test_the_replicas_call_each_other_as_the_ingress_calls_them() -> None:
    # The application's replicas get Serve's gRPC transport from the config; the ingress and the
    # benchmarks set the same values in their own process (use_grpc_transport).
    (shipped,) = SERVE_CONFIG["applications"]
    assert shipped["runtime_env"]["env_vars"] == dict(GRPC_TRANSPORT_ENV)


def test_grpc_transport_is_not_set_through_ray_client_nor_over_the_operators_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in GRPC_TRANSPORT_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "ray.serve._private.constants", raising=False)
    assert not use_grpc_transport("ray://head:10001")
    assert not any(key in os.environ for key in GRPC_TRANSPORT_ENV)
    monkeypatch.setenv("RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH", "1024")
    assert use_grpc_transport("auto")
    assert os.environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1"
    assert os.environ["RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"] == "1024"
