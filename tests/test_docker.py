"""The Docker deliverables, checked without a Docker engine: Dockerfile, compose file, ignore file,
entrypoint syntax, and the commands the docs tell users to type."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    return DockerfileParser(path=str(DOCKERFILE)).structure


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def stages(instructions: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    for ins in instructions:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def values(stage: list[dict], instruction: str) -> list[str]:
    return [ins["value"] for ins in stage if ins["instruction"] == instruction]


def env_of(stage: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values(stage, "ENV"):
        for pair in shlex.split(value.replace("\\\n", " ")):
            key, _, val = pair.partition("=")
            env[key] = val
    return env


def default_args(instructions: list[dict]) -> dict[str, str]:
    args = {}
    for ins in instructions:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            key, _, val = ins["value"].partition("=")
            args[key.strip()] = val.strip()
    return args


def test_hadolint_passes_at_warning_level() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_venv_copied_into_a_pinned_slim_runtime(instructions) -> None:
    builder, runtime = stages(instructions)
    args = default_args(instructions)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base  # pinned patch, slim
    assert values(builder, "FROM") == ["${PYTHON_IMAGE} AS builder"]
    assert values(runtime, "FROM")[0].startswith("${PYTHON_IMAGE}")
    assert any("venv /opt/venv" in v for v in values(builder, "RUN"))
    assert "--from=builder /opt/venv /opt/venv" in values(runtime, "COPY")
    assert env_of(runtime)["PATH"].startswith("/opt/venv/bin:")
    # nothing is compiled or installed in the runtime stage except the user
    assert not any("pip" in v for v in values(runtime, "RUN"))


def test_torch_is_the_cpu_build_unless_a_cuda_variant_is_asked_for(instructions) -> None:
    args = default_args(instructions)
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["TORCH_VERSION"] == "2.13.0"  # the version the Makefile pins
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    builder = stages(instructions)[0]
    torch_runs = [v for v in values(builder, "RUN") if "torch==" in v]
    assert len(torch_runs) == 1 and '--index-url "${TORCH_INDEX_URL}"' in torch_runs[0]
    # torch goes in before the project, so the project's dependency on it is already met
    runs = values(builder, "RUN")
    assert runs.index(torch_runs[0]) < next(
        i for i, v in enumerate(runs) if "install" in v and " ." in v
    )
    makefile = (ROOT / "Makefile").read_text()
    assert f"torch=={args['TORCH_VERSION']}" in makefile


def test_runtime_runs_as_a_numeric_non_root_user(instructions) -> None:
    runtime = stages(instructions)[-1]
    users = values(runtime, "USER")
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # the data directory belongs to that user
    assert any(f"chown {uid}:" in v and "/data" in v for v in values(runtime, "RUN"))


def test_port_command_entrypoint_and_healthcheck(instructions) -> None:
    runtime = stages(instructions)[-1]
    env = env_of(runtime)
    assert values(runtime, "EXPOSE") == [env["BITSEEK_PORT"]] == ["8000"]
    assert env["BITSEEK_HOST"] == "0.0.0.0"  # reachable from outside the container
    for instruction in ("CMD", "ENTRYPOINT"):
        (value,) = values(runtime, instruction)
        assert isinstance(json.loads(value), list), f"{instruction} must be exec form"
    assert json.loads(values(runtime, "CMD")[0]) == ["bitseek", "serve"]
    (health,) = values(runtime, "HEALTHCHECK")
    assert "/readyz" in health and "urllib.request" in health  # no curl in a slim image
    options, _, command = health.partition("CMD")
    assert isinstance(json.loads(command), list)
    start = re.search(r"--start-period=(\d+)s", options)
    assert start and int(start.group(1)) >= 300, "first start trains the demo models"


def test_volume_is_the_data_directory(instructions) -> None:
    runtime = stages(instructions)[-1]
    (volume,) = values(runtime, "VOLUME")
    assert json.loads(volume) == [env_of(runtime)["BITSEEK_DATA_DIR"]] == ["/data"]


def test_dockerignore_keeps_the_context_to_the_packages() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: everything else (.venv, .git, data, tests) is out
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml", "README.md", "models", "training", "service", "docker/entrypoint.sh"
    }  # fmt: skip
    # every path the Dockerfile copies from the context is allowed in
    for value in values(DockerfileParser(path=str(DOCKERFILE)).structure, "COPY"):
        parts = value.split()
        if parts[0].startswith("--from"):
            continue
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        assert all(s.rstrip("/") in allowed for s in sources), sources


def test_compose_service_volume_env_restart_and_health(compose, instructions) -> None:
    data_dir = env_of(stages(instructions)[-1])["BITSEEK_DATA_DIR"]
    service = compose["services"]["bitseek"]
    assert "profiles" not in service  # the CPU service is the default
    assert service["build"]["context"] == ".."
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    volume, _, target = service["volumes"][0].partition(":")
    assert target == data_dir == service["environment"]["BITSEEK_DATA_DIR"]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
    assert service["env_file"] == ["bitseek.env"]
    assert service["restart"] in {"always", "unless-stopped"}
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_gpu_profile_reserves_an_nvidia_device(compose) -> None:
    gpu = compose["services"]["bitseek-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert gpu["environment"]["BITSEEK_DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # same data volume as the CPU service: switching images keeps the data
    assert gpu["volumes"] == compose["services"]["bitseek"]["volumes"]


def test_env_example_names_the_admin_token() -> None:
    example = (ROOT / "docker" / "bitseek.env.example").read_text()
    assert re.search(r"^BITSEEK_ADMIN_TOKEN=", example, flags=re.M)


def test_entrypoint_is_valid_sh_that_execs_the_command() -> None:
    script = ROOT / "docker" / "entrypoint.sh"
    assert script.read_text().startswith("#!/bin/sh")
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert script.read_text().rstrip().endswith('exec "$@"')  # the server replaces the shell


def test_docs_only_use_build_args_and_files_that_exist(instructions, compose) -> None:
    docs = README.read_text().split("## Deploy with Docker", 1)[1]
    args = {ins["value"].split("=")[0] for ins in instructions if ins["instruction"] == "ARG"}
    for arg in re.findall(r"--build-arg (\w+)=", docs):
        assert arg in args
    for path in re.findall(r"docker compose -f (\S+)", docs):
        assert (ROOT / path).is_file(), path
    for line in docs.splitlines():
        if line.startswith("docker compose"):
            # docker compose -f FILE [--profile P] VERB [--flags] [SERVICE...]
            words = [w for w in shlex.split(line)[4:] if w != "--profile"]
            services = [w for w in words if not w.startswith("-") and w not in {"gpu"}]
            assert set(services[1:]) <= set(compose["services"]), line
    # helper containers in the docs use the image's own pinned base
    for image in re.findall(r"(python:3[\w.-]+)", docs):
        assert image == default_args(instructions)["PYTHON_IMAGE"]
    assert "docker/bitseek.env.example" in docs and (ROOT / "docker/bitseek.env.example").is_file()
