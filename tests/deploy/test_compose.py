"""Static checks of docker-compose.yml, the service Dockerfiles and .dockerignore.

No Docker engine is needed: the compose file is validated against the Compose Specification
JSON Schema from the shared reference folder, and the Dockerfiles are parsed as text.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY / "docker-compose.yml"
DOCKER_DIR = REPOSITORY / "services" / "docker"
DOCKERIGNORE = REPOSITORY / ".dockerignore"

SERVICES = ("ingestion", "features", "training", "inference")
TOPICS_JOB = "topics"
KAFKA = "kafka"
SPEC_TARGET = "/etc/streamml/pipeline.yaml"
SPEC_SOURCE = REPOSITORY / "examples" / "elec2.yaml"
HTTP_PORT = "8080"
RUNTIME_IMAGE = "python:3.11-slim"
RUNTIME_UID = "10001"

# The pyproject extras each image installs. The inference image installs cpu or gpu, by build argument.
EXPECTED_EXTRAS = {
    "ingestion": set(),
    "features": {"features"},
    "training": {"training"},
    "inference": {"cpu", "gpu"},
}
PUBLISHED_PORTS = {"ingestion": ("8080", "8080"), "inference": ("8081", "8080")}


# --- compose file -----------------------------------------------------------------------------


def compose_schema_path() -> Path:
    """Return the Compose Specification schema from STREAMML_REFERENCE_DIR, else ../shared/reference."""
    configured = os.environ.get("STREAMML_REFERENCE_DIR")
    folder = Path(configured) if configured else REPOSITORY.parent / "shared" / "reference"
    path = folder / "compose-spec" / "compose-spec.json"
    if not path.is_file():
        pytest.fail(f"Compose Specification schema {path} not found: set STREAMML_REFERENCE_DIR to the shared/reference folder")
    return path


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def environment(name: str) -> dict[str, str]:
    """Return a service's environment as strings, from either the mapping or the list form."""
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: compose_scalar(value) for key, value in raw.items()}


def compose_scalar(value: Any) -> str:
    """Return a YAML scalar as the string that Compose passes to the container."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def volume_mounts(name: str) -> list[dict[str, Any]]:
    """Return a service's volumes in the long syntax (type, source, target, read_only)."""
    mounts = []
    for entry in service(name).get("volumes", []):
        if isinstance(entry, dict):
            mounts.append(entry)
            continue
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append({"type": kind, "source": source, "target": target, "read_only": "ro" in options})
    return mounts


def published_ports(name: str) -> list[tuple[str, str]]:
    """Return a service's (host port, container port) pairs."""
    pairs = []
    for entry in service(name).get("ports", []):
        if isinstance(entry, dict):
            pairs.append((str(entry.get("published", "")), str(entry["target"])))
            continue
        parts = str(entry).split(":")
        pairs.append((parts[-2] if len(parts) > 1 else "", parts[-1].split("/")[0]))
    return pairs


def test_compose_file_matches_schema():
    schema = json.loads(compose_schema_path().read_text())
    # The schema names its dialect "https://json-schema.org/draft-07/schema", a spelling that
    # jsonschema's validator_for() does not map to draft 7, so the validator is chosen here.
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda error: str(list(error.absolute_path)))
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(
        f"  {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in errors
    )


def test_schema_rejects_unknown_service_key():
    schema = json.loads(compose_schema_path().read_text())
    document = copy.deepcopy(compose())
    document["services"]["ingestion"]["healthcheck_typo"] = True
    assert list(jsonschema.Draft7Validator(schema).iter_errors(document)), "the schema accepted an unknown service key"


@pytest.mark.parametrize("name", SERVICES)
def test_service_builds_its_own_image(name):
    definition = service(name)
    assert definition.get("image") == f"streamml-{name}"
    build = definition.get("build")
    assert isinstance(build, dict), f"{name}: build must name its Dockerfile"
    assert (REPOSITORY / build.get("context", ".")).resolve() == REPOSITORY
    dockerfile = build.get("dockerfile")
    assert dockerfile == f"services/docker/{name}.Dockerfile"
    assert (REPOSITORY / dockerfile).is_file(), f"{name}: {dockerfile} does not exist"


@pytest.mark.parametrize("name", SERVICES)
def test_service_has_a_healthcheck_on_healthz(name):
    healthcheck = service(name).get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False), f"{name} disables its healthcheck"
    test = healthcheck.get("test")
    command = " ".join(test) if isinstance(test, list) else str(test)
    assert command.startswith(("CMD ", "CMD-SHELL ")), f"{name}: healthcheck test {test!r} runs no command"
    assert f"127.0.0.1:{HTTP_PORT}/healthz" in command, f"{name}: healthcheck does not probe /healthz on port {HTTP_PORT}"
    if isinstance(test, list) and test[:3] == ["CMD", "python", "-c"]:
        compile(test[3], f"{name} healthcheck", "exec")
    assert environment(name).get(f"STREAMML_{name.upper()}_HTTP_PORT") == HTTP_PORT


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_in_pull_mode(name):
    variables = environment(name)
    assert variables.get(f"STREAMML_{name.upper()}_MODE") == "pull"
    assert variables.get(f"STREAMML_{name.upper()}_HTTP_HOST") == "0.0.0.0"
    assert variables.get("STREAMML_KAFKA_BOOTSTRAP_SERVERS") == kafka_internal_address()


@pytest.mark.parametrize("name", [*SERVICES, TOPICS_JOB])
def test_pipeline_spec_mounted_read_only(name):
    mounts = [mount for mount in volume_mounts(name) if mount.get("target") == SPEC_TARGET]
    assert len(mounts) == 1, f"{name} does not mount the pipeline spec at {SPEC_TARGET}"
    mount = mounts[0]
    assert mount.get("type") == "bind"
    assert mount.get("read_only") is True, f"{name} mounts the pipeline spec writable"
    assert (REPOSITORY / mount["source"]).resolve() == SPEC_SOURCE
    assert SPEC_SOURCE.is_file()
    if name != TOPICS_JOB:
        assert environment(name).get(f"STREAMML_{name.upper()}_SPEC") == SPEC_TARGET


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_topics_job(name):
    depends_on = service(name).get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on needs the long syntax to set a condition"
    assert TOPICS_JOB in depends_on, f"{name} does not depend on {TOPICS_JOB}"
    assert depends_on[TOPICS_JOB].get("condition") == "service_completed_successfully"


def topics_command() -> list[str]:
    job = service(TOPICS_JOB)
    entrypoint = job.get("entrypoint", [])
    command = job.get("command", [])
    entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
    command = shlex.split(command) if isinstance(command, str) else list(command)
    return [str(part) for part in entrypoint + command]


def option(arguments: list[str], name: str) -> str:
    assert name in arguments, f"{name} missing from {arguments}"
    return arguments[arguments.index(name) + 1]


def test_topics_job_waits_for_healthy_kafka():
    job = service(TOPICS_JOB)
    assert job.get("image") == "streamml-ingestion", "the topics job runs the core image, which has the streamml CLI"
    arguments = topics_command()
    assert arguments[:3] == ["streamml", "topics", "create"]
    assert option(arguments, "--spec") == SPEC_TARGET
    assert option(arguments, "--bootstrap-servers") == kafka_internal_address()
    assert job.get("depends_on", {}).get(KAFKA, {}).get("condition") == "service_healthy"
    assert str(job.get("restart", "no")) == "no", "the topics job must run once"


def test_features_partitions_match_topics():
    # The faust state table is co-partitioned with the raw topic, so the counts must be equal.
    assert environment("features").get("STREAMML_FEATURES_PARTITIONS") == option(topics_command(), "--partitions")


def test_model_directory_shared_with_inference():
    model_dir = environment("training").get("STREAMML_TRAINING_MODEL_DIR")
    assert model_dir, "training has no STREAMML_TRAINING_MODEL_DIR"
    training = [mount for mount in volume_mounts("training") if mount.get("target") == model_dir]
    inference = [mount for mount in volume_mounts("inference") if mount.get("target") == model_dir]
    assert training, f"training does not mount {model_dir}"
    assert inference, f"inference does not mount {model_dir}"
    assert training[0]["source"] == inference[0]["source"]
    assert training[0]["source"] in compose().get("volumes", {})
    assert not training[0].get("read_only"), "training writes the model files"
    assert inference[0].get("read_only") is True, "inference only reads the model files"


@pytest.mark.parametrize("name", sorted(PUBLISHED_PORTS))
def test_http_port_published_on_host(name):
    assert PUBLISHED_PORTS[name] in published_ports(name)


def test_inference_compose_build_is_cpu():
    arguments = service("inference")["build"].get("args", {})
    assert arguments.get("ONNXRUNTIME", "cpu") == "cpu"


# --- Kafka ------------------------------------------------------------------------------------


def kafka_internal_address() -> str:
    """Return the host:port that containers on the compose network use for the broker."""
    advertised = environment(KAFKA).get("KAFKA_ADVERTISED_LISTENERS", "")
    listeners = dict(entry.split("://", 1) for entry in advertised.split(",") if "://" in entry)
    assert "PLAINTEXT" in listeners, f"no PLAINTEXT listener in KAFKA_ADVERTISED_LISTENERS={advertised!r}"
    return listeners["PLAINTEXT"]


def test_kafka_runs_kraft_without_zookeeper():
    kafka = service(KAFKA)
    assert kafka.get("image", "").startswith("apache/kafka:"), "Kafka must be the official apache/kafka image"
    variables = environment(KAFKA)
    assert set(variables.get("KAFKA_PROCESS_ROLES", "").split(",")) == {"broker", "controller"}
    node_id = variables.get("KAFKA_NODE_ID")
    assert node_id, "KAFKA_NODE_ID is not set"
    voters = variables.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    assert voters.startswith(f"{node_id}@"), f"the node is not the controller quorum: {voters!r}"
    assert variables.get("KAFKA_CONTROLLER_LISTENER_NAMES") == "CONTROLLER"
    for name, definition in compose()["services"].items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in str(definition.get("image", "")).lower()
        assert not [key for key in environment(name) if "ZOOKEEPER" in key.upper()], f"{name} configures ZooKeeper"


def test_kafka_healthcheck_and_host_listener():
    healthcheck = service(KAFKA).get("healthcheck", {})
    command = " ".join(healthcheck.get("test", []))
    assert "kafka-broker-api-versions.sh" in command
    assert "--bootstrap-server localhost:9092" in command
    assert ("9092", "9092") in published_ports(KAFKA)
    advertised = environment(KAFKA).get("KAFKA_ADVERTISED_LISTENERS", "")
    assert "://localhost:9092" in advertised, "host clients need a listener advertised as localhost:9092"
    assert kafka_internal_address().startswith(f"{KAFKA}:")


# --- Dockerfiles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Parse a Dockerfile into the global ARG defaults and its stages.

    Comments and blank lines are dropped, also inside a continued instruction, as Docker does.
    Heredocs are not supported, because the service Dockerfiles use none.
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda match: global_args.get(match[1], match[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path.name}:{instruction.line}: only ARG may precede FROM"
            key, _, value = instruction.arguments.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


@cache
def dockerfile(name: str) -> tuple[dict[str, str], list[Stage]]:
    path = DOCKER_DIR / f"{name}.Dockerfile"
    assert path.is_file(), f"{path} does not exist"
    return parse_dockerfile(path)


def stage_args(stage: Stage) -> dict[str, str]:
    return dict(instruction.arguments.partition("=")[::2] for instruction in stage.all("ARG"))


def stage_env(stage: Stage) -> dict[str, str]:
    variables: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.arguments):
            key, _, value = word.partition("=")
            variables[key] = value
    return variables


def copy_sources(instruction: Instruction) -> list[str]:
    words = instruction.arguments.split()
    if words and words[0].startswith("["):
        words = json.loads(instruction.arguments)
    words = [word for word in words if not word.startswith("--")]
    return words[:-1]


def shell_script(run: Instruction) -> str:
    """Return the shell command of a RUN step, without its options such as --mount."""
    words = run.arguments.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words)


def run_with_pip_stub(run: Instruction, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a RUN step's shell script with `pip` replaced by a function that prints its arguments."""
    script = "pip() { printf '%s\\n' \"$@\"; }\n" + shell_script(run)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["/bin/sh", "-c", script], cwd=REPOSITORY, env={"PATH": path, **variables}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_is_multi_stage(name):
    _, stages = dockerfile(name)
    assert len(stages) >= 2, f"{name}.Dockerfile has one stage"
    builder, runtime = stages[0], stages[-1]
    assert builder.name, f"{name}.Dockerfile: the build stage needs a name for COPY --from"
    assert builder.base == RUNTIME_IMAGE
    assert runtime.base == RUNTIME_IMAGE
    assert any("/opt/streamml" in run.arguments and "venv" in run.arguments for run in builder.all("RUN"))
    copies = runtime.all("COPY")
    assert [copy.arguments for copy in copies] == [f"--from={builder.name} /opt/streamml /opt/streamml"], (
        f"{name}.Dockerfile: the runtime stage must copy only the virtual environment from {builder.name}"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_runs_as_non_root(name):
    _, stages = dockerfile(name)
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, f"{name}.Dockerfile sets no USER"
    user = users[-1].arguments.split(":")[0]
    assert user not in {"root", "0"}
    assert user == RUNTIME_UID
    assert any(f"--uid {RUNTIME_UID}" in run.arguments for run in runtime.all("RUN")), f"{name}.Dockerfile creates no user {RUNTIME_UID}"


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_entrypoint_runs_its_service(name):
    _, stages = dockerfile(name)
    entrypoints = stages[-1].all("ENTRYPOINT")
    assert entrypoints, f"{name}.Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoints[-1].arguments) == ["streamml", "run", name]


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_serves_http_on_8080(name):
    _, stages = dockerfile(name)
    runtime = stages[-1]
    assert [expose.arguments for expose in runtime.all("EXPOSE")] == [HTTP_PORT]
    variables = stage_env(runtime)
    prefix = f"STREAMML_{name.upper()}_"
    assert variables.get(f"{prefix}HTTP_HOST") == "0.0.0.0"
    assert variables.get(f"{prefix}HTTP_PORT") == HTTP_PORT
    assert variables.get(f"{prefix}SPEC") == SPEC_TARGET
    assert "/opt/streamml/bin" in variables.get("PATH", "")


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_healthcheck_probes_healthz(name):
    _, stages = dockerfile(name)
    healthchecks = stages[-1].all("HEALTHCHECK")
    assert healthchecks, f"{name}.Dockerfile has no HEALTHCHECK"
    arguments = healthchecks[-1].arguments
    assert " CMD [" in f" {arguments}", f"{name}.Dockerfile: HEALTHCHECK must use the exec form"
    command = json.loads(arguments[arguments.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/healthz" in command[2]
    assert f"STREAMML_{name.upper()}_HTTP_PORT" in command[2]


class HealthHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_exit_code_follows_healthz(name, status, healthy):
    _, stages = dockerfile(name)
    arguments = stages[-1].all("HEALTHCHECK")[-1].arguments
    command = json.loads(arguments[arguments.index("CMD") + 3 :].strip())
    handler = type("Handler", (HealthHandler,), {"status": status})
    with http.server.HTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            variables = {f"STREAMML_{name.upper()}_HTTP_PORT": str(server.server_address[1])}
            result = subprocess.run(
                [sys.executable, *command[1:]], env={**os.environ, **variables}, capture_output=True, text=True, timeout=30
            )
        finally:
            server.shutdown()
            thread.join()
    assert (result.returncode == 0) == healthy, result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_run_steps_are_valid_shell(name):
    _, stages = dockerfile(name)
    for stage in stages:
        for run in stage.all("RUN"):
            result = subprocess.run(["/bin/sh", "-n", "-c", shell_script(run)], capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"{name}.Dockerfile:{run.line}: {result.stderr}"


PROJECT_REFERENCE = re.compile(r"""(?:^|(?<=[\s"']))\.(?:\[([\w,-]*)\])?(?=$|[\s"'])""")


def installed_extras(name: str) -> tuple[int, set[str]]:
    """Return how many times the project is named in `pip install` steps, and the extras named."""
    _, stages = dockerfile(name)
    count, extras = 0, set()
    for stage in stages:
        for run in stage.all("RUN"):
            if "pip install" not in run.arguments:
                continue
            for match in PROJECT_REFERENCE.finditer(run.arguments):
                count += 1
                if match[1]:
                    extras.update(extra.strip() for extra in match[1].split(","))
    return count, extras


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_installs_service_extras(name):
    count, extras = installed_extras(name)
    assert count, f"{name}.Dockerfile never installs the project"
    assert extras == EXPECTED_EXTRAS[name]


def test_inference_image_installs_no_torch():
    _, extras = installed_extras("inference")
    assert not extras & {"training", "all", "dev"}, f"inference installs {extras}"
    _, stages = dockerfile("inference")
    for stage in stages:
        assert "TORCH_INDEX_URL" not in stage_args(stage)
        for run in stage.all("RUN"):
            if "pip install" in run.arguments:
                assert "torch" not in run.arguments, f"inference.Dockerfile:{run.line} installs torch"
    guards = [run for run in stages[-1].all("RUN") if "find_spec('torch')" in run.arguments]
    assert guards, "the runtime stage must fail the build when torch is installed"
    assert "sys.exit(" in guards[0].arguments
    assert stage_args(stages[0]).get("ONNXRUNTIME") == "cpu"


@pytest.mark.parametrize(
    ("runtime", "requirements"),
    [("cpu", [".[cpu]"]), ("gpu", [".[gpu]", "onnxruntime-gpu[cuda,cudnn]"]), ("rocm", None)],
)
def test_inference_install_follows_onnxruntime_arg(runtime, requirements):
    _, stages = dockerfile("inference")
    install = next(run for run in stages[0].all("RUN") if "pip install" in run.arguments)
    result = run_with_pip_stub(install, {"ONNXRUNTIME": runtime})
    if requirements is None:
        assert result.returncode != 0, f"ONNXRUNTIME={runtime} must fail the build"
        assert "ONNXRUNTIME must be cpu or gpu" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["install", *requirements]


def test_training_torch_pin_from_pyproject():
    _, stages = dockerfile("training")
    step = next(run for run in stages[0].all("RUN") if "$TORCH_INDEX_URL" in run.arguments and "pip install" in run.arguments)
    result = run_with_pip_stub(step, {"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu"})
    assert result.returncode == 0, result.stderr
    extra = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["optional-dependencies"]["training"]
    pins = [requirement for requirement in extra if re.match(r"torch\s*(?:[=<>!~;\[]|$)", requirement)]
    assert len(pins) == 1, f"the training extra must pin torch once: {extra}"
    assert result.stdout.split() == ["install", "--index-url", "https://download.pytorch.org/whl/cpu", pins[0]]


def test_training_torch_index_defaults_to_cpu():
    _, stages = dockerfile("training")
    builder = stages[0]
    assert stage_args(builder).get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert any('--index-url "$TORCH_INDEX_URL"' in run.arguments for run in builder.all("RUN"))


# --- build context ----------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing at the repository root"
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            body = line[1:] if negated else line
            body = body.strip().lstrip("/").rstrip("/")
            patterns.append(("!" if negated else "") + body)
    return patterns


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate a .dockerignore pattern (Go filepath.Match plus `**`) into a regular expression."""
    regex, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        elif pattern[index] == "[" and "]" in pattern[index:]:
            end = pattern.index("]", index)
            regex, index = regex + "[" + pattern[index + 1 : end].replace("\\", "\\\\") + "]", end + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return re.compile(regex)


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Return whether .dockerignore keeps `relative` out of the build context.

    A pattern that matches a folder excludes everything under it. The last matching pattern
    wins, and a `!` pattern includes the path again.
    """
    parts = relative.split("/")
    prefixes = ["/".join(parts[:length]) for length in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "relative",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".streamml/models/model.onnx",
        ".tools/bin/tool",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/entry",
        "services/streamml/__pycache__/cli.cpython-311.pyc",
        "services/streamml.egg-info/PKG-INFO",
        "bench/results.json",
    ],
)
def test_dockerignore_excludes_local_state(relative):
    assert is_ignored(relative, dockerignore_patterns())


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_copies_from_build_context(name):
    patterns = dockerignore_patterns()
    _, stages = dockerfile(name)
    sources = [
        source
        for stage in stages
        for copy_instruction in stage.all("COPY") + stage.all("ADD")
        if "--from=" not in copy_instruction.arguments
        for source in copy_sources(copy_instruction)
    ]
    assert sources, f"{name}.Dockerfile copies nothing from the build context"
    for source in sources:
        path = REPOSITORY / source
        assert path.exists(), f"{name}.Dockerfile copies {source}, which does not exist"
        assert not is_ignored(source, patterns), f"{name}.Dockerfile copies {source}, which .dockerignore excludes"
        files = [path] if path.is_file() else [file for file in path.rglob("*.py") if "__pycache__" not in file.parts]
        assert files, f"{name}.Dockerfile copies {source}, which holds no Python file"
        for file in files:
            relative = file.relative_to(REPOSITORY).as_posix()
            assert not is_ignored(relative, patterns), f".dockerignore excludes {relative}, which the {name} image needs"


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_copies_package_build_inputs(name):
    _, stages = dockerfile(name)
    sources = {source for copy_instruction in stages[0].all("COPY") for source in copy_sources(copy_instruction)}
    # setuptools reads the readme named in pyproject.toml and finds the packages under services/.
    assert {"pyproject.toml", "README.md", "services/streamml"} <= sources


@pytest.mark.parametrize("name", SERVICES)
def test_compose_build_args_are_declared(name):
    arguments = service(name)["build"].get("args", {})
    global_args, stages = dockerfile(name)
    declared = set(global_args)
    for stage in stages:
        declared |= set(stage_args(stage))
    names = set(arguments) if isinstance(arguments, dict) else {entry.split("=", 1)[0] for entry in arguments}
    assert names <= declared, f"{name}: compose passes {sorted(names - declared)}, which the Dockerfile does not declare"
