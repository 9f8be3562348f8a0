"""The deployment examples and the alerting guide stay true to the code they deploy and alert on.

Each Kubernetes example is read as the kubelet would run it: the files its Secret and ConfigMap volumes
put into the pod are written to a temporary directory, the container's environment is applied, and the
settings the daemon would start with are loaded; the probes, the scrape annotations and the user are
checked against those settings and the Dockerfile. The Compose file, the Prometheus rules and the two
event catalogues are checked against the repository and the code.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from pydantic import TypeAdapter

from maintainer import logs
from maintainer.job import Duration
from maintainer.metrics import REGISTRY
from maintainer.settings import Settings
from tests.support.dockerfile import image_user
from tests.support.paths import ROOT
from tests.support.settings import load_settings

DEPLOY = ROOT / "deploy"
KUBERNETES = {name: DEPLOY / "kubernetes" / f"{name}.yaml" for name in ("sidecar", "replicated")}
COMPOSE = DEPLOY / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
KUBERNETES_DEFAULT_GRACE_S = 30

Manifest = dict[str, Any]


def least_privileged_role() -> str:
    """The role config/parlant_maintainer_role.sql creates."""
    match = re.search(r"CREATE ROLE (\w+)", (ROOT / "config" / "parlant_maintainer_role.sql").read_text())
    assert match
    return match[1]


def shipped_shutdown_grace() -> timedelta:
    return load_settings().scheduler.shutdown_grace


# Kubernetes


@dataclasses.dataclass(frozen=True)
class MountedFile:
    kind: str  # Secret or ConfigMap
    content: str


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    documents: list[Manifest]

    def one(self, kind: str) -> Manifest:
        [document] = [document for document in self.documents if document["kind"] == kind]
        return document

    def named(self, kind: str, name: str) -> Manifest:
        found = [doc for doc in self.documents if doc["kind"] == kind and doc["metadata"]["name"] == name]
        assert found, f"{self.name}: {kind} {name} is mounted but not defined in the example"
        return found[0]

    @property
    def pod(self) -> Manifest:
        pod: Manifest = self.one("Deployment")["spec"]["template"]
        return pod

    @property
    def container(self) -> Manifest:
        [container] = [c for c in self.pod["spec"]["containers"] if c["name"] == "maintainer"]
        found: Manifest = container
        return found

    @property
    def env(self) -> dict[str, str]:
        return {variable["name"]: str(variable["value"]) for variable in self.container.get("env", [])}

    def files(self) -> dict[str, MountedFile]:
        """Every file the maintainer container's Secret and ConfigMap volumes show it, by its path in the pod."""
        volumes = {volume["name"]: volume for volume in self.pod["spec"].get("volumes", [])}
        files: dict[str, MountedFile] = {}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "secret" in volume:
                kind, source = "Secret", volume["secret"]
                data = self.named(kind, source["secretName"])
                entries = {**{key: base64.b64decode(value).decode() for key, value in data.get("data", {}).items()},
                           **data.get("stringData", {})}
            elif "configMap" in volume:
                kind, source = "ConfigMap", volume["configMap"]
                entries = self.named(kind, source["name"]).get("data", {})
            else:
                continue
            paths = {item["key"]: item["path"] for item in source["items"]} if "items" in source else {
                key: key for key in entries}
            for key, path in paths.items():
                files[f"{mount['mountPath'].rstrip('/')}/{path}"] = MountedFile(kind, entries[key])
        return files


def load_example(name: str) -> Example:
    return Example(name, list(yaml.safe_load_all(KUBERNETES[name].read_text())))


@pytest.fixture(params=list(KUBERNETES), ids=list(KUBERNETES))
def example(request: pytest.FixtureRequest) -> Example:
    return load_example(request.param)


@pytest.fixture
def pod_settings(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the example's maintainer container starts with: its environment and its mounted files."""
    files = example.files()
    for path, mounted in files.items():
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(mounted.content)
    for name, value in example.env.items():
        monkeypatch.setenv(name, str(tmp_path / value.lstrip("/")) if value in files else value)
    return load_settings()


def port_number(container: Manifest, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    [number] = [entry["containerPort"] for entry in container.get("ports", []) if entry.get("name") == port]
    return int(number)


def probes(container: Manifest) -> dict[str, Manifest]:
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container}


def test_maintainer_container_runs_the_daemon_of_this_version(example: Example) -> None:
    image, _, tag = example.container["image"].rpartition(":")

    assert image.rsplit("/", 1)[-1] == "maintainer"
    assert tag == PROJECT["version"]
    assert "command" not in example.container  # the image's ENTRYPOINT stays maintainer
    assert example.container["args"] == ["run"]


def test_probes_and_the_container_port_are_the_port_the_daemon_listens_on(
    example: Example, pod_settings: Settings
) -> None:
    port = int(example.env["MAINTAINER_HTTP_PORT"])

    assert pod_settings.http_port == port
    assert [entry["containerPort"] for entry in example.container["ports"]] == [port]
    assert probes(example.container)
    for kind, probe in probes(example.container).items():
        assert port_number(example.container, probe["httpGet"]["port"]) == port, kind
    assert example.container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_sidecar_probes_only_liveness_so_maintenance_never_takes_the_application_out_of_service() -> None:
    sidecar = load_example("sidecar")

    assert "readinessProbe" not in sidecar.container
    assert {probe["httpGet"]["path"] for probe in probes(sidecar.container).values()} == {"/healthz"}
    assert [c["name"] for c in sidecar.pod["spec"]["containers"] if c["name"] != "maintainer"], "no application"


def test_replicated_runs_several_replicas_ready_when_check_passes() -> None:
    replicated = load_example("replicated")

    assert replicated.one("Deployment")["spec"]["replicas"] >= 2
    assert replicated.container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_grace_period_outlasts_the_shutdown_grace(example: Example, pod_settings: Settings) -> None:
    grace_s = example.pod["spec"]["terminationGracePeriodSeconds"]

    assert grace_s >= KUBERNETES_DEFAULT_GRACE_S
    assert grace_s > pod_settings.scheduler.shutdown_grace.total_seconds()
    assert grace_s > shipped_shutdown_grace().total_seconds()


def test_container_runs_as_the_image_user_and_not_as_root(example: Example) -> None:
    context = {**example.pod["spec"].get("securityContext", {}), **example.container.get("securityContext", {})}
    uid, gid = image_user()

    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == uid
    assert context.get("runAsGroup", gid) == gid


def test_database_url_comes_from_the_secret_for_the_least_privileged_role(
    example: Example, pod_settings: Settings
) -> None:
    files = example.files()
    url_file = example.env["MAINTAINER_DATABASE_URL_FILE"]

    assert url_file in files, f"{url_file} is not a file of any volume the container mounts"
    assert files[url_file].kind == "Secret"
    assert "MAINTAINER_DATABASE_URL" not in example.env
    assert pod_settings.database_url is not None
    assert conninfo_to_dict(pod_settings.database_url.get_secret_value())["user"] == least_privileged_role()


def test_configuration_file_comes_from_a_config_map_and_overrides_the_defaults(
    example: Example, pod_settings: Settings
) -> None:
    config = example.env.get("MAINTAINER_CONFIG")
    if config is None:
        pytest.skip(f"the {example.name} example uses the shipped configuration")
    files = example.files()

    assert config in files, f"{config} is not a file of any volume the container mounts"
    assert files[config].kind == "ConfigMap"
    overrides = leaves(tomllib.loads(files[config].content))
    assert overrides
    for path, value in overrides.items():
        effective = setting(pod_settings, path)
        expected = TypeAdapter(Duration).validate_python(value) if isinstance(effective, timedelta) else value
        assert effective == expected, path


def leaves(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            found |= leaves(value, (*prefix, key))
        else:
            found[(*prefix, key)] = value
    return found


def setting(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for key in path:
        value = value[key] if isinstance(value, dict) else getattr(value, key)
    return value


def test_prometheus_scrapes_the_metrics_port(example: Example, pod_settings: Settings) -> None:
    annotations = example.pod["metadata"]["annotations"]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(pod_settings.http_port)
    assert annotations["prometheus.io/path"] == "/metrics"


# Docker Compose


def compose() -> Manifest:
    document: Manifest = yaml.safe_load(COMPOSE.read_text())
    return document


def environment(service: Manifest) -> dict[str, str]:
    entries = service.get("environment", {})
    if isinstance(entries, list):
        entries = dict(entry.split("=", 1) for entry in entries)
    return {name: str(value) for name, value in entries.items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert match, duration
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def test_compose_starts_maintainer_once_postgres_is_healthy() -> None:
    services = compose()["services"]

    assert {"postgres", "maintainer"} <= services.keys()
    assert services["maintainer"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"]
    assert (COMPOSE.parent / services["maintainer"]["build"] / "Dockerfile").resolve() == ROOT / "Dockerfile"


def test_compose_init_scripts_are_repository_files_and_the_role_comes_after_the_schema() -> None:
    mounts = [volume.split(":") for volume in compose()["services"]["postgres"]["volumes"]]
    init = sorted((target, (COMPOSE.parent / source).resolve()) for source, target, *_ in mounts
                  if target.startswith("/docker-entrypoint-initdb.d/"))

    assert init
    for target, source in init:
        assert source.is_file(), f"{target}: {source} does not exist"
        assert source.is_relative_to(ROOT)
    order = [source for _, source in init]
    assert order.index(ROOT / "config" / "parlant_maintainer_role.sql") > order.index(
        ROOT / "maintainer" / "sql" / "parlant_fixture.sql")  # the role file grants on the fixture's tables


def test_compose_publishes_the_http_port_and_connects_to_the_postgres_service() -> None:
    services = compose()["services"]
    maintainer, postgres = environment(services["maintainer"]), environment(services["postgres"])
    port = maintainer["MAINTAINER_HTTP_PORT"]

    assert services["maintainer"]["ports"] == [f"{port}:{port}"]
    url = conninfo_to_dict(maintainer["MAINTAINER_DATABASE_URL"])
    assert (url["host"], url["dbname"], url["user"], url["password"]) == (
        "postgres", postgres["POSTGRES_DB"], postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert seconds(services["maintainer"]["stop_grace_period"]) > shipped_shutdown_grace().total_seconds()


# Prometheus


SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                   "gauge": ("",), "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}


def exposed_metric_names() -> set[str]:
    """The series /metrics can show, which PromQL selects: each family's sample names, by its type."""
    return {family.name + suffix for family in REGISTRY.collect() for suffix in SAMPLE_SUFFIXES[family.type]}


def histogram_names() -> set[str]:
    """A histogram is documented by its family name, though PromQL selects its _bucket, _count and _sum."""
    return {family.name for family in REGISTRY.collect() if family.type in ("histogram", "summary")}


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w.])maintainer_[a-z_]+[a-z]", text))


def alert_rules() -> list[Manifest]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_have_the_structure_prometheus_loads() -> None:
    document = yaml.safe_load(ALERTS.read_text())

    assert document.keys() == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(set(names)) == len(names)
    for group in document["groups"]:
        assert group.keys() <= {"name", "interval", "limit", "rules"}
        assert group["rules"]
    alerts = [rule["alert"] for rule in alert_rules()]
    assert len(set(alerts)) == len(alerts)
    for rule in alert_rules():
        assert rule.keys() <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", rule["alert"])
        assert isinstance(rule["expr"], str)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule.get("for", "0s")), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_metric_an_alert_uses_is_exposed() -> None:
    used = {name for rule in alert_rules() for name in metric_names(rule["expr"])}

    assert used
    assert used - exposed_metric_names() == set()


@pytest.mark.parametrize("document", ["docs/daemon.md", "docs/alerting.md"])
def test_every_metric_exposed_is_named_in_the_docs(document: str) -> None:
    named = metric_names((ROOT / document).read_text())

    assert {family.name for family in REGISTRY.collect()} - named - {
        name.removesuffix("_total") for name in named} == set()


def test_every_metric_the_docs_name_is_exposed() -> None:
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    named = set().union(*(metric_names(path.read_text()) for path in documents))

    assert named
    assert named - exposed_metric_names() - histogram_names() == set()


# The event catalogues


def catalogue(path: Path, heading: str) -> dict[str, str]:
    """event -> level, from the ``| event | level | ... |`` table under ``heading``."""
    lines = ("\n" + path.read_text()).split(f"\n{heading}\n", 1)[1].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| event | level |"))
    events: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names, level = [cell.strip() for cell in line.strip("|").split("|")][:2]
        events |= dict.fromkeys(re.findall(r"`([a-z_]+)`", names), level)
    return events


CALL = re.compile(r"\.(debug|info|warning|error|exception|critical)\(\s*[\"']([a-z][a-z0-9_]*)[\"']")


def logged_events() -> dict[str, set[str]]:
    """event -> the levels it is logged at, from every log call with a literal event in the engine and the jobs."""
    events: dict[str, set[str]] = {logs.LIBRARY_EVENT: {"as logged"}}  # the standard library's records
    for path in [*(ROOT / "maintainer").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]:
        for method, event in CALL.findall(path.read_text()):
            events.setdefault(event, set()).add("error" if method == "exception" else method)
    return events


def documented_events() -> dict[str, str]:
    return catalogue(ROOT / "docs" / "events.md", "# Log events")


def test_catalogue_lists_every_event_the_code_logs_and_no_other() -> None:
    documented, logged = documented_events(), logged_events()

    assert logged.keys() - documented.keys() == set(), "logged but not documented"
    assert documented.keys() - logged.keys() == set(), "documented but never logged"


def test_catalogue_gives_each_event_the_level_it_is_logged_at() -> None:
    documented, logged = documented_events(), logged_events()

    assert {event: {level} for event, level in documented.items() if event in logged} == {
        event: levels for event, levels in logged.items() if event in documented}
