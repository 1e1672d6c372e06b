"""The Grafana dashboard: its PromQL names only what the services export, and Helm and Compose ship the one file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from streamml.common import metrics
from tests.deploy.test_manifests import CHART_DIR, helm, tools  # noqa: F401  (fixtures)

REPOSITORY = Path(__file__).resolve().parents[2]
DASHBOARD = CHART_DIR / "dashboards" / "streamml.json"
COMPOSE_FILE = REPOSITORY / "docker-compose.yml"
SERVICES = ("ingestion", "features", "training", "inference")

SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}

# The panels the dashboard needs, and a metric each must query broken down by service where it has one.
REQUIRED_PANELS = {
    "throughput": "streamml_events_received_total",
    "lag": "streamml_consumer_lag_records",
    "latency": "streamml_end_to_end_latency_seconds_bucket",
    "dead letters": "streamml_dead_letters_total",
    "model version": "streamml_model_version",
    "served accuracy": "streamml_served_accuracy_ratio",
}


def exported_series() -> dict[str, set[str]]:
    """Return every series name the services can export, with the labels it carries."""
    series: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        (family,) = metric.describe()
        labels = set(metric._labelnames)
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_sum"] = labels
            series[f"{family.name}_count"] = labels
        else:
            series[family.name] = labels
    return series


def parse(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """Return the metric names of a PromQL expression with the labels matched on each, and the grouping labels."""
    text = re.sub(r"\[[^\]]*\]", "", expr)
    grouping = {label.strip() for clause in GROUPING.findall(text) for label in clause.split(",") if label.strip()}
    text = GROUPING.sub("", text)
    names: dict[str, set[str]] = {}
    for name, matchers in SELECTOR.findall(text):
        names.setdefault(name, set()).update(MATCHER.findall(matchers))
    text = SELECTOR.sub(" ", text)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", text)
    for match in IDENTIFIER.finditer(text):
        word = match.group()
        follows = text[match.end():].lstrip()[:1]
        if follows == "(" or word.lower() in KEYWORDS or word.startswith("$"):
            continue
        names.setdefault(word, set())
    return names, grouping


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def test_parser_finds_names_and_labels():
    names, grouping = parse('histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{service=~"$service"}[5m]))) / b')
    assert names == {"a_bucket": {"service"}, "b": set()}
    assert grouping == {"service", "le"}


@pytest.mark.parametrize(("title", "expr"), expressions())
def test_expression_names_exported_metrics(title, expr):
    series = exported_series()
    names, grouping = parse(expr)
    assert names, f"{title}: no metric in {expr}"
    available: set[str] = set()
    for name, matched in names.items():
        assert name in series, f"{title}: {name} is not a metric the services export"
        assert matched <= series[name], f"{title}: {name} has no label {sorted(matched - series[name])}"
        available |= series[name]
    assert grouping <= available, f"{title}: grouping by {sorted(grouping - available)}, which {sorted(names)} do not carry"


@pytest.mark.parametrize("topic", sorted(REQUIRED_PANELS))
def test_dashboard_shows(topic):
    metric = REQUIRED_PANELS[topic]
    found = [(title, expr) for title, expr in expressions() if metric in parse(expr)[0]]
    assert found, f"no panel queries {metric} for {topic}"
    if "service" in exported_series()[metric]:
        assert any("service" in parse(expr)[1] for _, expr in found), f"no {topic} panel breaks {metric} down by service"


def test_dashboard_structure():
    document = dashboard()
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    assert document["uid"] == "streamml"
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["service"]["definition"] == "label_values(streamml_build_info, service)"
    assert "service" in exported_series()["streamml_build_info"]
    for panel in panels():
        box = panel["gridPos"]
        assert box["x"] >= 0, panel["title"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]


def test_chart_ships_dashboard_file(helm):
    done = helm("template", "streamml", str(CHART_DIR), "--set", "metrics.dashboard.enabled=true")
    assert done.returncode == 0, done.stderr
    (config_map,) = [
        doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["metadata"]["name"] == "streamml-dashboard"
    ]
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["streamml.json"]) == dashboard()


def test_chart_leaves_dashboard_out_by_default(helm):
    done = helm("template", "streamml", str(CHART_DIR))
    assert done.returncode == 0, done.stderr
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(done.stdout) if doc]
    assert "streamml-dashboard" not in names


def compose_service(name: str) -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]


def mounts(name: str) -> dict[str, Path]:
    """Return a compose service's bind mounts as target to source path."""
    found = {}
    for mount in compose_service(name).get("volumes", []):
        if isinstance(mount, dict) and mount.get("type") == "bind":
            assert mount.get("read_only") is True, f"{name} mounts {mount['source']} writable"
            found[mount["target"]] = (REPOSITORY / mount["source"]).resolve()
    return found


@pytest.mark.parametrize("name", ["prometheus", "grafana", "jaeger"])
def test_compose_profile_holds_observability(name):
    assert compose_service(name)["profiles"] == ["observability"]


def test_compose_grafana_mounts_chart_dashboard():
    grafana = mounts("grafana")
    provider = yaml.safe_load(grafana["/etc/grafana/provisioning/dashboards/streamml.yaml"].read_text())
    (entry,) = provider["providers"]
    folder = entry["options"]["path"]
    dashboards = {target: source for target, source in grafana.items() if target.startswith(folder + "/")}
    assert dashboards == {f"{folder}/streamml.json": DASHBOARD.resolve()}
    sources = yaml.safe_load(grafana["/etc/grafana/provisioning/datasources/streamml.yaml"].read_text())
    (prometheus,) = [source for source in sources["datasources"] if source["type"] == "prometheus"]
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True


def test_compose_prometheus_scrapes_services():
    config = yaml.safe_load(mounts("prometheus")["/etc/prometheus/prometheus.yml"].read_text())
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert sorted(targets) == sorted(f"{service}:8080" for service in SERVICES)
    for service in SERVICES:
        environment = compose_service(service)["environment"]
        assert str(environment[f"STREAMML_{service.upper()}_HTTP_PORT"]) == "8080"
        assert environment[f"STREAMML_{service.upper()}_TRACING"] == "${STREAMML_TRACING:-false}"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
