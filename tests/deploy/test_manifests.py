"""The deployment manifests: the plain files in knative/ and the helm/streamml chart.

Every object goes through kubeconform -strict. The Knative kinds are checked against the
strict CRD schemas of the reference data folder, the core kinds against the Kubernetes
schemas that the kubernetes-validate package ships, and no kind may go unchecked. helm and
kubeconform come from scripts/go-tools. A missing tool, schema folder or package fails these
tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
KNATIVE_DIR = REPOSITORY / "knative"
CHART_DIR = REPOSITORY / "helm" / "streamml"
TOOLS_DIR = REPOSITORY / ".tools"

# The Kubernetes version of the core schemas. scripts/go-tools links the same version into
# helm as its .Capabilities.KubeVersion.
KUBERNETES_VERSION = "1.36.0"

SERVICES = ("ingestion", "features", "training", "inference")
INPUTS = {"ingestion": ["input"], "features": ["raw"], "training": ["features", "labels"], "inference": ["features"]}
SINGLE_POD = {"features", "training"}
PIPELINE = "elec2"
SPEC_PATH = "/etc/streamml/pipeline.yaml"
APP_VERSION = "0.1.0"
DEFAULT_REGISTRY = "ghcr.io/streamml"

KSVC = ("serving.knative.dev/v1", "Service")
KAFKA_SOURCE = ("sources.knative.dev/v1", "KafkaSource")
KAFKA_SINK = ("eventing.knative.dev/v1alpha1", "KafkaSink")

TEST_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SASL_SSL = [
    "--set", "kafka.securityProtocol=SASL_SSL",
    "--set", "kafka.sasl.mechanism=SCRAM-SHA-512",
    "--set", "kafka.sasl.username=streamml",
    "--set", "kafka.sasl.password=not-a-secret",
    "--set-string", f"kafka.tls.caCert={TEST_CA}",
]
# helm template arguments per case, and whether inference gets a GPU.
RENDER_CASES: dict[str, tuple[list[str], bool]] = {
    "knative": ([], False),
    "knative-gpu": (["--set", "gpu.enabled=true"], True),
    "deployment": (["--set", "mode=deployment"], False),
    "deployment-gpu": (["--set", "mode=deployment", "--set", "gpu.enabled=true"], True),
    "knative-sasl-ssl": (SASL_SSL, False),
    "deployment-existing-secret": (
        ["--set", "mode=deployment", "--set", "kafka.existingSecret=kafka-users",
         "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.tls.caCertInExistingSecret=true"],
        False,
    ),
    "deployment-observability": (
        ["--set", "mode=deployment", "--set", "metrics.dashboard.enabled=true", "--set", "tracing.enabled=true",
         "--set", "tracing.otlpEndpoint=http://otel-collector.observability:4318"],
        False,
    ),
}


# --- tools and schemas ---------------------------------------------------------------------


def reference_dir() -> Path:
    configured = os.environ.get("STREAMML_REFERENCE_DIR")
    folder = Path(configured) if configured else REPOSITORY.parent / "shared" / "reference"
    if not folder.is_dir():
        pytest.fail(f"reference data folder {folder} not found: set STREAMML_REFERENCE_DIR to the shared/reference folder")
    return folder


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    """Build helm and kubeconform with scripts/go-tools (a no-op once they are current)."""
    bin_dir = TOOLS_DIR / "bin"
    try:
        done = subprocess.run(
            [str(REPOSITORY / "scripts" / "go-tools")], capture_output=True, text=True, timeout=1200, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"scripts/go-tools did not finish: {error}")
    if done.returncode != 0:
        pytest.fail(f"scripts/go-tools failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    found = {name: bin_dir / name for name in ("helm", "kubeconform")}
    for name, path in found.items():
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name} is missing at {path} after scripts/go-tools")
    return found


@pytest.fixture(scope="session")
def crd_schema_location() -> str:
    strict = reference_dir() / "crd-schemas" / "strict"
    if not (strict / "serving.knative.dev" / "service_v1.json").is_file():
        pytest.fail(f"strict Knative CRD schemas not found under {strict}")
    return f"{strict}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json"


@pytest.fixture(scope="session")
def core_schema_location() -> str:
    """Core Kubernetes schemas from kubernetes-validate, laid out for kubeconform.

    The package's files name each other by absolute URI ($id https://kubernetes.io/api/...,
    $ref /api/_definitions.json#...), which kubeconform would fetch over HTTP. The copy under
    .tools/kubernetes-json-schema drops the $id and points each $ref at the _definitions.json
    beside it, so everything resolves on disk. File names stay as the package has them:
    <kind>[-<group>]-<version>.json, which is {{.ResourceKind}}{{.KindSuffix}}.json.
    """
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: run scripts/setup dev, or .venv/bin/pip install kubernetes-validate")

    folder = f"v{KUBERNETES_VERSION}-local-strict"
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / folder
    if not (source / "_definitions.json").is_file():
        pytest.fail(f"kubernetes-validate {version('kubernetes-validate')} has no schemas for Kubernetes {KUBERNETES_VERSION}")
    target = TOOLS_DIR / "kubernetes-json-schema" / folder
    stamp = target / ".source"
    want = f"kubernetes-validate {version('kubernetes-validate')}"
    if not stamp.is_file() or stamp.read_text() != want:
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.json"):
            schema = json.loads(path.read_text())
            schema.pop("$id", None)
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            (target / path.name).write_text(text)
        stamp.write_text(want)
    folder_template = "{{.NormalizedKubernetesVersion}}-local{{.StrictSuffix}}"
    return f"{TOOLS_DIR}/kubernetes-json-schema/{folder_template}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json"


@pytest.fixture(scope="session")
def kubeconform(tools, crd_schema_location, core_schema_location):
    """Return a function that validates files or YAML text and fails on any result but valid."""

    def validate(*paths: Path, stdin: str | None = None) -> list[dict[str, Any]]:
        command = [
            str(tools["kubeconform"]), "-strict", "-summary", "-verbose", "-output", "json",
            "-kubernetes-version", KUBERNETES_VERSION,
            "-schema-location", crd_schema_location,
            "-schema-location", core_schema_location,
        ]
        command += [str(path) for path in paths] if stdin is None else ["-"]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"kubeconform returned no JSON report ({done.returncode}):\n{done.stdout}{done.stderr}")
        bad = [result for result in report["resources"] if result["status"] != "statusValid"]
        assert not bad, "kubeconform:\n" + "\n".join(f"{r['kind']} {r['name']}: {r['status']} {r['msg']}" for r in bad)
        assert done.returncode == 0, done.stderr
        return report["resources"]

    return validate


@pytest.fixture(scope="session")
def helm(tools):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # helm's cache, configuration and data folders point into .tools, so helm reads no
        # user configuration and writes nothing outside the repository.
        env = dict(os.environ)
        for variable in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[variable] = str(TOOLS_DIR / "helm" / variable.split("_")[1].lower())
        return subprocess.run([str(tools["helm"]), *args], capture_output=True, text=True, timeout=120, env=env, check=False)

    return run


@pytest.fixture(scope="session")
def rendered(helm) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """helm template output of every case: the text and the parsed objects."""
    results = {}
    for case, (args, _gpu) in RENDER_CASES.items():
        done = helm("template", "streamml", str(CHART_DIR), *args)
        assert done.returncode == 0, f"helm template ({case}):\n{done.stderr}"
        results[case] = (done.stdout, [doc for doc in yaml.safe_load_all(done.stdout) if doc])
    return results


# --- object helpers ------------------------------------------------------------------------


def load_dir(folder: Path) -> list[dict[str, Any]]:
    objects = []
    for path in sorted(folder.rglob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def plain_objects(gpu: bool) -> list[dict[str, Any]]:
    """What `kubectl apply -f knative/` creates, followed by knative/gpu/ when gpu is true."""
    objects = []
    for path in sorted(KNATIVE_DIR.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if gpu:
        for override in load_dir(KNATIVE_DIR / "gpu"):
            objects = [o for o in objects if key(o) != key(override)] + [override]
    return objects


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


def of(objects: list[dict[str, Any]], api_kind: tuple[str, str]) -> list[dict[str, Any]]:
    return [o for o in objects if (o["apiVersion"], o["kind"]) == api_kind]


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every workload."""
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in (KSVC, ("apps/v1", "Deployment"), ("batch/v1", "Job")):
            yield obj, obj["spec"]["template"]["spec"]


def config_map(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    """The one ConfigMap whose name ends with suffix: -config (settings) or -pipeline (spec)."""
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(suffix)]
    return found


def config_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    return config_map(objects, "-config")["data"]


def check_common(objects: list[dict[str, Any]], gpu: bool, mode: str) -> None:
    """Checks that hold for the plain manifests and every chart rendering."""
    config = config_map(objects, "-config")
    data = config["data"]
    secrets = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    push_or_pull = "push" if mode == "knative" else "pull"
    for service in SERVICES:
        prefix = f"STREAMML_{service.upper()}_"
        assert data[prefix + "SPEC"] == SPEC_PATH
        assert data[prefix + "MODE"] == push_or_pull
        assert data[prefix + "HTTP_HOST"] == "0.0.0.0"
        assert data[prefix + "HTTP_PORT"] == "8080"
        assert data[prefix + "LOG_JSON"] == "true"
    assert data["STREAMML_KAFKA_BOOTSTRAP_SERVERS"]
    for name in data:
        assert not re.search("PASSWORD|USERNAME", name), f"{name} belongs in the Secret"

    pipeline = config_map(objects, "-pipeline")
    example = yaml.safe_load((REPOSITORY / "examples" / "elec2.yaml").read_text())
    assert yaml.safe_load(pipeline["data"]["pipeline.yaml"]) == example

    workloads = list(pod_specs(objects))
    assert {component(obj) for obj, _ in workloads} == {*SERVICES, "topics"}
    for obj, spec in workloads:
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            where = f"{obj['kind']} {obj['metadata']['name']} container {container['name']}"
            context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert "requests" in container["resources"], where
            assert "memory" in container["resources"]["limits"], where
            mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
            pipeline_volume = volumes[mounts[str(Path(SPEC_PATH).parent)]["name"]]
            assert pipeline_volume["configMap"]["name"] == pipeline["metadata"]["name"], where
            env = {item["name"]: item for item in container.get("env", [])}
            password = env["STREAMML_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert password["key"] == "password", where
            if secrets:
                assert [password["name"]] == secrets, where
            assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [config["metadata"]["name"]], where

            service = component(obj)
            image_service = "ingestion" if service == "topics" else service
            registry, _, tag = container["image"].rpartition(":")
            assert registry == f"{DEFAULT_REGISTRY}/streamml-{image_service}", where
            has_gpu = gpu and service == "inference"
            assert tag == (f"{APP_VERSION}-gpu" if has_gpu else APP_VERSION), where
            assert ("nvidia.com/gpu" in container["resources"].get("limits", {})) == has_gpu, where
            if has_gpu:
                assert env["STREAMML_INFERENCE_PROVIDER"]["value"] == "cuda", where
                assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", where
            if service == "topics":
                assert container["args"][:4] == ["topics", "create", "--spec", SPEC_PATH], where
                partitions = container["args"][container["args"].index("--partitions") + 1]
                assert partitions == data["STREAMML_FEATURES_PARTITIONS"], "the state table must match the raw partitions"
                assert int(container["args"][container["args"].index("--replication-factor") + 1]) >= 1, where
                continue
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert [port["containerPort"] for port in container["ports"]] == [8080], where


def check_knative(objects: list[dict[str, Any]]) -> None:
    services = {component(o): o for o in of(objects, KSVC)}
    assert sorted(services) == sorted(SERVICES)
    for service, ksvc in services.items():
        annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
        name = ksvc["metadata"]["name"]
        assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev", name
        assert annotations["autoscaling.knative.dev/min-scale"] == "0", name
        assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1, name
        assert float(annotations["autoscaling.knative.dev/target"]) > 0, name
        assert re.fullmatch(r"\d+[smh]", annotations["autoscaling.knative.dev/scale-down-delay"]), name
        if service in SINGLE_POD:
            assert annotations["autoscaling.knative.dev/max-scale"] == "1", f"{name} holds state in the process"
        top_level = ksvc["metadata"].get("annotations", {})
        misplaced = [k for k in top_level if k.startswith("autoscaling.knative.dev/")]
        assert not misplaced, f"{name}: autoscaling annotations belong on spec.template"
        spec = ksvc["spec"]["template"]["spec"]
        assert spec["containerConcurrency"] > 0, name
        (container,) = spec["containers"]
        env = {**config_data(objects), **{item["name"]: item.get("value") for item in container["env"]}}
        limit = env[f"STREAMML_{service.upper()}_MAX_INFLIGHT_REQUESTS"]
        assert limit == str(spec["containerConcurrency"]), f"{name}: the service would answer 429 within Knative's limit"
        assert container["ports"][0]["name"] == "http1", name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] == 8080, f"{name}: the kubelet needs the port of the {probe}"
        assert "securityContext" not in spec, f"{name}: the pod securityContext needs a Knative feature flag"
        for mount in container["volumeMounts"]:
            assert mount["mountPath"] not in ("/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"), f"{name}: reserved path"

    sinks = of(objects, KAFKA_SINK)
    assert len(sinks) == 1
    (sink,) = sinks
    assert sink["spec"]["topic"] == f"streamml.{PIPELINE}.dead-letter"
    assert sink["spec"]["bootstrapServers"] == config_data(objects)["STREAMML_KAFKA_BOOTSTRAP_SERVERS"].split(",")

    sources = {component(o): o for o in of(objects, KAFKA_SOURCE)}
    assert sorted(sources) == sorted(SERVICES)
    groups = [source["spec"]["consumerGroup"] for source in sources.values()]
    assert len(set(groups)) == len(groups), f"consumer groups shared: {groups}"
    for service, source in sources.items():
        name = source["metadata"]["name"]
        spec = source["spec"]
        assert source["metadata"]["annotations"]["kafka.eventing.knative.dev/delivery.order"] == "ordered", name
        assert spec["ordering"] == "ordered", name
        assert spec["consumerGroup"] == f"streamml-{service}-{PIPELINE}", name
        assert spec["topics"] == [f"streamml.{PIPELINE}.{role}" for role in INPUTS[service]], name
        assert spec["bootstrapServers"] == sink["spec"]["bootstrapServers"], name
        assert spec["initialOffset"] == "earliest", name
        target = spec["sink"]["ref"]
        assert (target["apiVersion"], target["kind"], target["name"]) == key(services[service]), name
        delivery = spec["delivery"]
        assert delivery["retry"] > 0, name
        assert delivery["backoffPolicy"] == "exponential", name
        assert re.fullmatch(r"PT[\d.]+S", delivery["backoffDelay"]), name
        dead_letter = delivery["deadLetterSink"]["ref"]
        assert (dead_letter["apiVersion"], dead_letter["kind"], dead_letter["name"]) == key(sink), name


# --- knative/ --------------------------------------------------------------------------------


def test_knative_manifests_pass_kubeconform_strict(kubeconform):
    results = kubeconform(KNATIVE_DIR)
    expected = load_dir(KNATIVE_DIR)
    assert len(results) == len(expected)
    assert sorted((r["kind"], r["name"]) for r in results) == sorted((o["kind"], o["metadata"]["name"]) for o in expected)


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_knative_manifests_structure(gpu):
    objects = plain_objects(gpu)
    for obj in objects:
        assert "namespace" not in obj["metadata"], f"{key(obj)} names a namespace"
    check_common(objects, gpu=gpu, mode="knative")
    check_knative(objects)
    assert config_data(objects)["STREAMML_INFERENCE_PROVIDER"] == "cpu"


def test_knative_manifests_match_the_chart(rendered):
    """The plain files and the chart's default rendering describe the same objects."""
    _, chart = rendered["knative"]
    plain = plain_objects(gpu=False)
    assert sorted(key(o) for o in plain if o["kind"] != "Job") == sorted(
        key(o) for o in chart if o["kind"] not in ("Job", "ServiceAccount")
    )
    for api_kind in (KAFKA_SOURCE, KAFKA_SINK):
        ours = {o["metadata"]["name"]: o["spec"] for o in of(plain, api_kind)}
        theirs = {o["metadata"]["name"]: o["spec"] for o in of(chart, api_kind)}
        for spec in (*ours.values(), *theirs.values()):
            spec.pop("auth", None)
        assert ours == theirs
    for name, value in config_data(plain).items():
        assert config_data(chart)[name] == value, name


# --- helm/streamml ---------------------------------------------------------------------------


def test_chart_metadata():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == APP_VERSION
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_helm_lint_is_clean(helm, case, strict):
    args, _gpu = RENDER_CASES[case]
    done = helm("lint", str(CHART_DIR), *(["--strict"] if strict else []), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    findings = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert findings in ([], ["[INFO] Chart.yaml: icon is recommended"]), done.stdout


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_helm_template_passes_kubeconform_strict(kubeconform, rendered, case):
    text, objects = rendered[case]
    results = kubeconform(stdin=text)
    assert len(results) == len(objects)


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_helm_template_structure(rendered, case):
    _, objects = rendered[case]
    _args, gpu = RENDER_CASES[case]
    mode = "deployment" if case.startswith("deployment") else "knative"
    check_common(objects, gpu=gpu, mode=mode)
    assert config_data(objects)["STREAMML_INFERENCE_PROVIDER"] == ("cuda" if gpu else "cpu")
    if mode == "knative":
        check_knative(objects)
        assert not [o for o in objects if o["kind"] == "Deployment" or key(o)[:2] == ("v1", "Service")]
        return
    assert not [o for o in objects if "knative.dev" in o["apiVersion"]]
    deployments = {component(o): o for o in objects if o["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(SERVICES)
    services = {component(o): o for o in objects if key(o)[:2] == ("v1", "Service")}
    assert sorted(services) == sorted(SERVICES)
    for service, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert services[service]["spec"]["selector"] == selector
        if service in SINGLE_POD:
            assert deployment["spec"]["replicas"] == 1
            assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_helm_template_kafka_security(rendered):
    _, objects = rendered["knative-sasl-ssl"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["stringData"] == {
        "protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "user": "streamml",
        "password": "not-a-secret", "ca.crt": TEST_CA,
    }
    for source in of(objects, KAFKA_SOURCE):
        net = source["spec"]["net"]
        assert net["sasl"]["enable"] is True
        assert net["tls"]["enable"] is True
        assert net["sasl"]["password"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "password"}
        assert net["tls"]["caCert"]["secretKeyRef"]["key"] == "ca.crt"
    (sink,) = of(objects, KAFKA_SINK)
    assert sink["spec"]["auth"]["secret"]["ref"]["name"] == secret["metadata"]["name"]
    for _obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            env = {item["name"]: item for item in container["env"]}
            assert env["STREAMML_KAFKA_SSL_CA_LOCATION"]["value"] == "/etc/streamml/kafka/ca.crt"

    _, objects = rendered["deployment-existing-secret"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    for _obj, spec in pod_specs(objects):
        for container in spec["containers"]:
            refs = {item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"] if "valueFrom" in item}
            assert refs == {"kafka-users"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "ingestion.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "mode=serverless"], "mode"),
        (["--set", "training.autoscaling.maxScale=2"], "maxScale"),
        (["--set", "features.autoscaling.maxScale=3"], "maxScale"),
        (["--set", "training.replicas=2"], "replicas"),
        (["--set", "kafka.securityProtocol=SASL_SSL"], "kafka.sasl.mechanism is required"),
        (["--set-string", "pipeline.spec=name: Not_A_Name"], "pipeline name"),
        (["--set-string", "kafka.tls.caCert=x"], "uses no TLS"),
        (["--set", "tracing.enabled=true"], "tracing.otlpEndpoint is required"),
        (["--set", "tracing.otlpEndpoint=collector:4318"], "otlpEndpoint"),
        (["--set", "tracing.sampler=sometimes"], "sampler"),
    ],
)
def test_helm_template_rejects_bad_values(helm, args, message):
    done = helm("template", "streamml", str(CHART_DIR), *args)
    assert done.returncode != 0
    assert message in done.stderr
