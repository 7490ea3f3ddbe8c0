"""deploy/: the lab's docker-compose.yml (PostgreSQL, MinIO, the MLflow server) agrees with itself, with
training-machine.env and with the READMEs. Docker is not on the test machines: the files are checked as
data, and tests/e2e/test_team_server.py runs the same `mlflow server` recipe on real components."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import tomllib
import yaml
from factories import ROOT
from packaging.requirements import Requirement

DEPLOY = ROOT / "deploy"


def interpolate(value: str) -> str:
    """Docker Compose's interpolation with no .env: `${VAR:-default}` -> default, `$$` -> `$`."""
    unset = re.findall(r"\$\{(\w+)\}|\$(?!\$)(\w+)", value.replace("$$", ""))
    assert not unset, f"variables without a default: {unset}"
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value).replace("$$", "$")


def options(command: list[str]) -> dict[str, str | None]:
    """`--name value`, `--name=value` and `--flag` of a command line."""
    found: dict[str, str | None] = {}
    i = 0
    while i < len(command):
        word = command[i]
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if eq:
                found[name] = value
            elif i + 1 < len(command) and not command[i + 1].startswith("--"):
                found[name] = command[i + 1]
                i += 1
            else:
                found[name] = None
        i += 1
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    text = (DEPLOY / "docker-compose.yml").read_text()
    return yaml.safe_load(interpolate(text))


def published(service: dict, container_port: int) -> int:
    """The host port a service publishes CONTAINER_PORT on."""
    for spec in service.get("ports", []):
        host, _, target = str(spec).rpartition(":")
        if int(target) == container_port:
            return int(host)
    raise AssertionError(f"port {container_port} is not published: {service.get('ports')}")


def server(compose: dict) -> dict[str, str | None]:
    command = compose["services"]["mlflow"]["command"]
    assert isinstance(command, list), "mlflow's command: a list, one word each"
    assert command[:2] == ["mlflow", "server"], command
    return options(command)


def init_service(compose: dict) -> tuple[str, str]:
    """The service that creates the bucket: (its name, the bucket)."""
    for name, service in compose["services"].items():
        script = " ".join(service.get("entrypoint") or []) + " " + " ".join(service.get("command") or [])
        if made := re.search(r"mc mb (?:--ignore-existing |-p )?\w+/([a-z0-9.-]+)", script):
            return name, made[1]
    raise AssertionError("no service creates the bucket (mc mb)")


def test_services_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    for name in ("postgres", "minio", "mlflow"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("restart") == "unless-stopped", name
    init, _ = init_service(compose)
    assert services[init]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        init: {"condition": "service_completed_successfully"},
    }
    # The data outlives the containers.
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(str(v).endswith(":/data") for v in services["minio"]["volumes"])
    assert {"postgres-data", "minio-data"} <= set(compose["volumes"])


def test_backend_store_is_the_postgres_service(compose: dict) -> None:
    env = compose["services"]["postgres"]["environment"]
    uri = urlsplit(server(compose)["--backend-store-uri"])
    assert uri.scheme == "postgresql"
    assert uri.hostname == "postgres" and (uri.port or 5432) == 5432
    assert uri.username == env["POSTGRES_USER"] and uri.password == env["POSTGRES_PASSWORD"]
    assert uri.path == f"/{env['POSTGRES_DB']}"
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_artifacts_go_to_the_bucket_the_init_service_creates(compose: dict) -> None:
    services = compose["services"]
    opts = server(compose)
    assert "--serve-artifacts" in opts and "--no-serve-artifacts" not in opts
    assert "--default-artifact-root" not in opts  # new experiments: mlflow-artifacts:/, through the server
    destination = urlsplit(opts["--artifacts-destination"])
    init, bucket = init_service(compose)
    assert destination.scheme == "s3" and destination.hostname == bucket
    # The server reaches MinIO, with MinIO's credentials, where the init service created the bucket.
    env, minio = services["mlflow"]["environment"], services["minio"]["environment"]
    init_script = " ".join(services[init]["entrypoint"])
    assert f"alias set lab {env['MLFLOW_S3_ENDPOINT_URL']} " in init_script
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    assert (
        env["AWS_ACCESS_KEY_ID"]
        == minio["MINIO_ROOT_USER"]
        == services[init]["environment"]["MINIO_ROOT_USER"]
    )
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    # MinIO itself is not published: only the server talks to it (its console is, for the administrator).
    assert all(not str(p).endswith(":9000") for p in services["minio"].get("ports", []))


def test_training_machines_need_the_tracking_uri_only(compose: dict) -> None:
    opts = server(compose)
    assert opts["--host"] == "0.0.0.0"
    port = published(compose["services"]["mlflow"], int(opts["--port"]))
    lines = [
        line.strip()
        for line in (DEPLOY / "training-machine.env").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    variables = dict(line.split("=", 1) for line in lines)
    assert set(variables) == {"MLFLOW_TRACKING_URI"}, variables
    uri = urlsplit(variables["MLFLOW_TRACKING_URI"])
    assert uri.scheme == "http" and uri.port == port
    assert re.fullmatch(r"[\w.-]+", uri.hostname), "a host name a shell can source"
    # The deploy README says the same port.
    assert said_ports((DEPLOY / "README.md").read_text()) == {port}


def test_readme_scaling_up_points_at_the_deploy_files(compose: dict) -> None:
    opts = server(compose)
    port = published(compose["services"]["mlflow"], int(opts["--port"]))
    readme = (ROOT / "README.md").read_text()
    scaling = re.search(r"^## Scaling up\n(.*?)(?=^## |\Z)", readme, flags=re.M | re.S)
    assert scaling, "README.md has no '## Scaling up' section"
    # Its part on the shared server: a `**A shared tracking server**` paragraph (or `### ...` subsection) up
    # to the next such heading.
    shared = re.search(
        r"^(?:\*\*|### )A shared tracking server.*?(?=^\*\*|^##|\Z)", scaling[1], flags=re.M | re.S | re.I
    )
    assert shared, "README.md's Scaling up has no 'A shared tracking server' part"
    text = shared[0]
    assert "deploy/docker-compose.yml" in text and "deploy/training-machine.env" in text
    assert said_ports(text) == {port}


def said_ports(text: str) -> set[int]:
    """The tracking server's port wherever TEXT gives it: MLFLOW_TRACKING_URI=..., http://<server>:N,
    `mlflow server ... --port N`. At least one."""
    found = re.findall(r"MLFLOW_TRACKING_URI=http://[^\s:/`]+:(\d+)", text)
    found += re.findall(r"http://<server>:(\d+)", text) + re.findall(r"--port (\d+)", text)
    assert found, "no port of the tracking server given"
    return {int(p) for p in found}


def test_server_image_and_extra_carry_the_driver_and_boto3() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    version = re.search(r"ARG MLFLOW_VERSION=(\S+)", dockerfile)[1]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (mlflow_req,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "mlflow"]
    assert version in mlflow_req.specifier, "the server's MLflow is outside the project's range"
    for package in ("psycopg", "boto3"):
        assert package in dockerfile
    compose = yaml.safe_load(interpolate((DEPLOY / "docker-compose.yml").read_text()))
    assert compose["services"]["mlflow"]["image"].endswith(f":{version}")
    extra = {Requirement(d).name for d in project["optional-dependencies"]["server"]}
    assert {"boto3", "moto"} <= extra and extra & {"psycopg", "psycopg2-binary"}
    assert ".[test,server]" in (ROOT / ".ci" / "run").read_text()
