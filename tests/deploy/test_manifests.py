"""Dockerfile, compose and Kubernetes files agree with the code: services, ports, endpoints, commands, settings.

Nothing here can run Docker or a cluster, so the files are checked structurally against the code they start
(the CLI, HTTP_PORTS, the settings classes, the generated definitions), and the pieces that can run here do:
the image's health check command, the probe endpoints of a running service, and the database script.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import httpx
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from deploy.broker import NAMESPACE, account_name, dev_password
from deploy.generate import DEPLOY_DIR, database_name, postgres_init_sql
from services.cli.main import cli
from services.registry import SERVICES
from shared.settings import HTTP_PORTS
from shared.testing.pipeline import Pipeline
from tests.probe_service import make_service

ROOT = DEPLOY_DIR.parent
K8S = DEPLOY_DIR / "k8s"
SECRET_TEMPLATE = K8S / "secrets.template.yaml"
IMAGE = "loggamera-erasure"
PROBE_PATHS = {"/healthz", "/readyz"}  # what shared.consumer.ServiceRunner serves besides /metrics
SCHEMA_DIR = Path("/usr/lib/rabbitmq/lib")
NEWER_THAN_3_10 = {  # rabbitmq.conf keys that the 3.13 image knows and the local 3.10 schema does not
    "quorum_queue.continuous_membership_reconciliation.enabled",
    "quorum_queue.continuous_membership_reconciliation.target_group_size",
}


def k8s_name(service: str) -> str:
    """Kubernetes object names allow no underscore."""
    return f"erasure-{service.replace('_', '-')}"


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s(kind: str | None = None) -> list[dict[str, Any]]:
    docs = [d for path in sorted(K8S.rglob("*.yaml")) if path.name != "kustomization.yaml"
            for d in _yaml_docs(path)]
    return [d for d in docs if kind is None or d["kind"] == kind]


def _by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s(kind)}


def _compose() -> dict[str, Any]:
    """compose.yaml as compose reads it with no variables set: every `${NAME:-default}` is its default."""
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", (DEPLOY_DIR / "compose.yaml").read_text())
    return yaml.safe_load(text)


def _dockerfile_final_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [line.strip() for line in lines[last_from:] if line.strip() and not line.lstrip().startswith("#")]


def _instruction(name: str) -> str:
    [line] = [line for line in _dockerfile_final_stage() if line.split()[0] == name]
    return line[len(name):].strip()


def _entrypoint() -> list[str]:
    return json.loads(_instruction("ENTRYPOINT"))


def resolve(argv: list[str]) -> click.Command:
    """The click command an argv (after `erasure`) runs, with its arguments parsed; fails on anything unknown."""
    command: click.Command = cli
    rest = list(argv)
    ctx = click.Context(cli, info_name="erasure")
    while isinstance(command, click.Group):
        assert rest, f"`erasure {' '.join(argv)}` stops at a group"
        name = rest.pop(0)
        found = command.get_command(ctx, name)
        assert found is not None, f"`erasure {' '.join(argv)}`: no command {name!r}"
        command = found
        ctx = click.Context(command, info_name=name, parent=ctx)
    command.make_context(command.name or "", rest, parent=ctx.parent)  # raises on bad arguments or options
    return command


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"]
    return template["spec"]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = _pod_spec(workload)["containers"]
    return container


# ---- Dockerfile --------------------------------------------------------------------------------------------
def test_image_is_python_slim_running_the_cli_as_a_non_root_user() -> None:
    assert _instruction("FROM") == "${PYTHON_IMAGE}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text().splitlines()
    user = _instruction("USER").split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert _entrypoint() == ["erasure"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'erasure = "services.cli:main"' in pyproject, "the image's ENTRYPOINT is the project's console script"
    healthcheck = _instruction("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck and "curl" not in healthcheck


def test_build_context_admits_only_what_the_image_needs() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "an allow-list: nothing enters the build unless named"
    admitted = {line[1:] for line in lines if line.startswith("!")}
    copied = {source for line in _dockerfile_lines_of_build_stage() if line.startswith("COPY ")
              for source in line.split()[1:-1]}
    assert copied == admitted == {"pyproject.toml", "README.md", "shared", "schemas", "services", "ops"}


def _dockerfile_lines_of_build_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [line.strip() for line in lines[:last_from]]


def _healthcheck_code(cmdline: Path) -> str:
    argv = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert argv[:2] == ["python", "-c"]
    return argv[2].replace("/proc/1/cmdline", str(cmdline))


def _run_healthcheck(tmp_path: Path, argv: list[str], env: dict[str, str]) -> int:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    result = subprocess.run([sys.executable, "-c", _healthcheck_code(cmdline)], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, timeout=30, check=False)
    return result.returncode


def test_image_healthcheck_asks_the_service_named_on_its_command_line(
    erasure_pipeline: Pipeline, tmp_path: Path
) -> None:
    running = erasure_pipeline.start(make_service("probe"), http_port=0)
    port = str(running.runner.http_port)
    console = ["/opt/erasure/bin/python", "/opt/erasure/bin/erasure"]
    assert _run_healthcheck(tmp_path, [*console, "run", "probe"], {"ERASURE_PROBE_HTTP_PORT": port}) == 0
    running.stop()
    assert _run_healthcheck(tmp_path, [*console, "run", "probe"], {"ERASURE_PROBE_HTTP_PORT": port}) != 0
    assert _run_healthcheck(tmp_path, [*console, "run", "sandbox"], {}) == 0, "the sandbox has no health port"
    assert _run_healthcheck(tmp_path, [*console, "retention", "purge"], {}) == 0


def test_probe_paths_in_every_manifest_are_served_by_a_running_service(erasure_pipeline: Pipeline) -> None:
    used = set()
    for deployment in _k8s("Deployment"):
        container = _container(deployment)
        used |= {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    for service in SERVICES:
        used |= set(re.findall(r"/(?:healthz|readyz)", json.dumps(_compose()["services"][service]["healthcheck"])))
    assert used == PROBE_PATHS
    running = erasure_pipeline.start(make_service("probe"), http_port=0)
    for path in sorted(used):
        response = httpx.get(f"http://127.0.0.1:{running.runner.http_port}{path}", timeout=5)
        assert response.status_code == 200, (path, response.text)


# ---- compose -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_each_service_from_the_image_with_its_own_account_and_database(service: str) -> None:
    spec = _compose()["services"][service]
    assert spec["image"].split(":")[0] == IMAGE and "entrypoint" not in spec
    assert spec["command"] == ["run", service]
    assert resolve(spec["command"]).name == "run"
    env = spec["environment"]
    broker = urlsplit(env["ERASURE_AMQP_URL"])
    assert unquote(broker.username or "") == account_name(NAMESPACE, service)
    assert unquote(broker.password or "") == dev_password(account_name(NAMESPACE, service))
    assert unquote(broker.path.lstrip("/")) == NAMESPACE
    assert env["ERASURE_DECLARE"] == "own"
    database = make_url(env[f"ERASURE_{service.upper()}_DATABASE_URL"])
    assert database.drivername == "postgresql+psycopg"
    assert database.database == database.username == database_name(service)
    assert database.password == dev_password(database_name(service))
    port = HTTP_PORTS[service]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(spec["healthcheck"]["test"])
    assert f"127.0.0.1:{port}:{port}" in spec["ports"]
    assert {"rabbitmq", "postgres"} <= set(spec["depends_on"])


def test_compose_mounts_the_generated_broker_and_database_files() -> None:
    services = _compose()["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13")
    assert services["postgres"]["image"] == "postgres:16"
    conf = (DEPLOY_DIR / "rabbitmq" / "rabbitmq.conf").read_text()
    [definitions_dir] = re.findall(r"^definitions.local.path = (\S+)$", conf, re.MULTILINE)
    assert re.search(r"^definitions.import_backend = local_filesystem$", conf, re.MULTILINE)
    mounts = {}
    for volume in services["rabbitmq"]["volumes"] + services["postgres"]["volumes"]:
        source, _, target = volume.partition(":")
        if source.startswith("./"):
            assert (DEPLOY_DIR / source).is_file(), source
            mounts[source] = target.removesuffix(":ro")
    assert mounts["./rabbitmq/definitions.json"].startswith(definitions_dir + "/")
    assert mounts["./rabbitmq/dev-guest.json"].startswith(definitions_dir + "/")
    assert mounts["./rabbitmq/rabbitmq.conf"] == "/etc/rabbitmq/rabbitmq.conf"
    assert mounts["./postgres/init.sql"].startswith("/docker-entrypoint-initdb.d/")


def test_compose_sandbox_is_reachable_from_the_other_containers() -> None:
    services = _compose()["services"]
    sandbox = services["sandbox"]
    assert "entrypoint" not in sandbox, "the image's entry point, `erasure`, runs it"
    assert sandbox["command"] == ["run", "sandbox", "--host", "0.0.0.0"]  # noqa: S104 - inside its container
    from services.cli.main import run

    assert "host" in {param.name for param in run.params}
    importlib.import_module("services.sandbox.server")
    vendor_urls = [value for s in SERVICES for key, value in services[s]["environment"].items()
                   if key.startswith(f"ERASURE_{s.upper()}_") and key.endswith(("_URL", "_HOST"))
                   and not key.endswith(("_DATABASE_URL", "_CONFIRM_URL"))]
    assert vendor_urls and all("sandbox" in url for url in vendor_urls)


# ---- settings named anywhere exist ---------------------------------------------------------------------------
def _known_env_names() -> set[str]:
    for service in SERVICES:
        importlib.import_module(f"services.{service}.settings")
    importlib.import_module("shared.settings")
    importlib.import_module("shared.keys.config")
    names = {"ERASURE_DATABASE_URL", "ERASURE_VAR_DIR", "ERASURE_LOG_FORMAT", "ERASURE_FAILPOINTS",
             "ERASURE_KEYS_DATABASE_URL"}
    names |= {f"ERASURE_{s.upper()}_{suffix}" for s in SERVICES for suffix in ("DATABASE_URL", "HTTP_PORT")}
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, str):
                names.add(alias.upper())
            elif isinstance(alias, AliasChoices):
                names |= {str(choice).upper() for choice in alias.choices}
            else:
                names.add(f"{prefix}{field_name}".upper())
    return names


def _env_names_in_manifests() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, spec in _compose()["services"].items():
        found[f"compose:{name}"] = set(spec.get("environment", {}))
    for doc in _k8s():
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            found[f"{doc['kind']}:{doc['metadata']['name']}"] = {k for k in keys if k.isupper()}
        elif doc["kind"] in ("Deployment", "CronJob"):
            found[f"{doc['kind']}:{doc['metadata']['name']}"] = {e["name"] for e in _container(doc).get("env", [])}
    return found


def test_every_setting_named_in_a_manifest_is_one_the_code_reads() -> None:
    known = _known_env_names()
    unknown = {where: sorted(names - known) for where, names in _env_names_in_manifests().items()
               if names - known and not where.startswith(("compose:postgres", "compose:rabbitmq"))}
    assert unknown == {}


# ---- Kubernetes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_deployment_probing_its_own_port(service: str) -> None:
    deployment = _by_name("Deployment")[k8s_name(service)]
    container = _container(deployment)
    assert container["image"] == IMAGE
    assert container["args"] == ["run", service] and "command" not in container
    assert resolve(container["args"]).name == "run"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": HTTP_PORTS[service]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    sources = container["envFrom"]
    assert {"configMapRef": {"name": "erasure-config"}} in sources
    assert {"secretRef": {"name": k8s_name(service)}} in sources
    assert {"secretRef": {"name": "erasure-signing"}} in sources
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(HTTP_PORTS[service])
    assert deployment["spec"]["replicas"] >= 2, "replicas share the queue; one can go while the other works"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_secret_holds_its_own_broker_account_and_database(service: str) -> None:
    secret = _by_name("Secret")[k8s_name(service)]["stringData"]
    broker = urlsplit(secret["ERASURE_AMQP_URL"])
    assert broker.scheme == "amqps" and unquote(broker.username or "") == account_name(NAMESPACE, service)
    database = make_url(secret[f"ERASURE_{service.upper()}_DATABASE_URL"])
    assert database.database == database.username == database_name(service)


def test_pod_disruption_budgets_select_exactly_their_deployment() -> None:
    deployments = _by_name("Deployment")
    budgets = _by_name("PodDisruptionBudget")
    assert set(budgets) == set(deployments) == {k8s_name(s) for s in SERVICES}
    for name, budget in budgets.items():
        selector = budget["spec"]["selector"]["matchLabels"]
        matched = [d for d, spec in deployments.items()
                   if selector.items() <= spec["spec"]["template"]["metadata"]["labels"].items()]
        assert matched == [name]
        assert selector == deployments[name]["spec"]["selector"]["matchLabels"]
        assert budget["spec"]["minAvailable"] < deployments[name]["spec"]["replicas"], "a drain must be possible"


@pytest.mark.parametrize(("job", "argv"), [
    ("erasure-retention-purge", ["retention", "purge", "--json"]),
    ("erasure-sweep-inactive", ["sweep", "inactive", "--json"]),
    ("erasure-intake-cleanup", ["intake", "cleanup", "--json"]),
])
def test_daily_jobs_run_commands_the_cli_has(job: str, argv: list[str]) -> None:
    cronjob = _by_name("CronJob")[job]
    container = _container(cronjob)
    assert container["args"] == argv and container["image"] == IMAGE
    resolve(argv)
    minute, hour, *daily = cronjob["spec"]["schedule"].split()
    assert daily == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_workloads_refer_only_to_config_and_secrets_that_exist() -> None:
    config = set(_by_name("ConfigMap"))
    secrets = {name: set(doc["stringData"]) for name, doc in _by_name("Secret").items()}
    for workload in _k8s("Deployment") + _k8s("CronJob"):
        container = _container(workload)
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config
            else:
                assert source["secretRef"]["name"] in secrets
        for variable in container.get("env", []):
            ref = variable["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]], ref
        for volume in _pod_spec(workload)["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    tls = _by_name("Secret")["erasure-tls"]["stringData"]
    configmap = _by_name("ConfigMap")["erasure-config"]["data"]
    for key in ("ERASURE_AMQP_TLS_CA", "ERASURE_DB_SSLROOTCERT"):
        assert Path(configmap[key]).name in tls and configmap[key].startswith("/etc/erasure/tls/")


def test_pods_run_as_the_image_user_without_privileges() -> None:
    uid = int(_instruction("USER").split(":")[0])
    for workload in _k8s("Deployment") + _k8s("CronJob"):
        pod = _pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
        container = _container(workload)["securityContext"]
        assert container["allowPrivilegeEscalation"] is False and container["readOnlyRootFilesystem"] is True


def test_kustomization_lists_every_manifest_except_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {SECRET_TEMPLATE.name}
    assert [image["name"] for image in kustomization["images"]] == [IMAGE]
    assert kustomization["namespace"] == NAMESPACE


# ---- RabbitMQ configuration --------------------------------------------------------------------------------
def _schema_keys() -> list[re.Pattern[str]]:
    patterns = []
    for schema in SCHEMA_DIR.glob("rabbitmq_server-*/plugins/*/priv/schema/*.schema"):
        for key in re.findall(r'\{mapping, "([^"]+)"', schema.read_text(errors="replace")):
            patterns.append(re.compile("^" + re.sub(r"\\\$\w+", r"[^.]+", re.escape(key)) + "$"))
    return patterns


def test_rabbitmq_conf_uses_only_keys_the_broker_knows() -> None:
    patterns = _schema_keys()
    if not patterns:
        pytest.skip("no RabbitMQ configuration schema installed here")
    conf = (DEPLOY_DIR / "rabbitmq" / "rabbitmq.conf").read_text()
    keys = [line.split("=", 1)[0].strip() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    commented = [line[1:].split("=", 1)[0].strip() for line in conf.splitlines()
                 if re.match(r"^# [a-z_.0-9]+ = ", line)]
    for key in ["consumer_timeout", "disk_free_limit.absolute", "vm_memory_high_watermark.relative", "heartbeat",
                "definitions.import_backend", "definitions.local.path", "queue_leader_locator"]:
        assert key in keys
    assert "listeners.ssl.default" in commented
    unknown = [k for k in keys + commented if k not in NEWER_THAN_3_10 and not any(p.match(k) for p in patterns)]
    assert unknown == []
    assert not NEWER_THAN_3_10 & set(keys), "a 3.10 broker refuses to boot on these: leave them commented"


# ---- PostgreSQL init script ----------------------------------------------------------------------------------
@pytest.fixture
def private_databases(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    """init.sql run on the local PostgreSQL under suffixed names; a URL per service, dropped afterwards."""
    suffix = uuid.uuid4().hex[:6]
    sql = re.sub(r"\berasure_(\w+)", rf"erasure_{suffix}_\1", postgres_init_sql())
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    names = [f"erasure_{suffix}_{s}" for s in SERVICES]
    try:
        with admin.connect() as conn:
            for statement in (s for s in sql.split(";\n") if s.strip().strip("-").strip()):
                body = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
                conn.execute(text(body))
        base = make_url(postgres_admin_url)
        # init.sql's own passwords: a server that checks them (a container's) and one that trusts (local) both pass
        yield {s: base.set(username=n, password=dev_password(n), database=n).render_as_string(hide_password=False)
               for s, n in zip(SERVICES, names, strict=True)}
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


def test_each_service_owns_its_database_and_cannot_enter_another(private_databases: dict[str, str]) -> None:
    own = create_engine(private_databases["newsletter"])
    with own.begin() as conn:
        conn.execute(text("CREATE TABLE migrated (id int)"))  # migrations run as the service's role
    own.dispose()
    newsletter = make_url(private_databases["newsletter"])
    intruder = create_engine(make_url(private_databases["ledger"]).set(
        username=newsletter.username, password=newsletter.password).render_as_string(hide_password=False))
    with pytest.raises(OperationalError, match="permission denied for database"):
        intruder.connect()
    intruder.dispose()
