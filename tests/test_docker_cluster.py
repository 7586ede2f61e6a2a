"""docker/cluster (Milvus standalone, two Bitseek replicas, nginx), checked without a Docker
engine: the compose structure, the settings it passes, the shared volume, the start order, and
nginx's routing of reads and writes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "docker" / "cluster"
REPLICAS = ("bitseek-1", "bitseek-2")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((CLUSTER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def nginx() -> str:
    return (CLUSTER / "nginx.conf").read_text()


def test_the_services_and_their_start_order(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"etcd", "minio", "milvus", *REPLICAS, "lb"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing {dependency}"
            # waits for health only on services that report it
            assert condition == {"condition": "service_healthy"}
            assert "healthcheck" in services[dependency]
    assert set(services["milvus"]["depends_on"]) == {"etcd", "minio"}
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert services["milvus"]["environment"] == {"ETCD_ENDPOINTS": "etcd:2379",
                                                  "MINIO_ADDRESS": "minio:9000"}  # fmt: skip
    # one replica builds the demo collections into the empty store before the other starts
    assert "milvus" in services["bitseek-1"]["depends_on"]
    assert "bitseek-1" in services["bitseek-2"]["depends_on"]


def test_replicas_run_the_image_on_milvus_and_share_one_volume(compose: dict) -> None:
    fields = Settings.model_fields
    for name in REPLICAS:
        service = compose["services"][name]
        env = service["environment"]
        for key in env:  # every setting passed is one the service reads
            assert key.startswith("BITSEEK_") and key[8:].lower() in fields, key
        Settings(**{key[8:].lower(): value for key, value in env.items()})  # valid values
        assert env["BITSEEK_BACKEND"] == "milvus"
        assert re.fullmatch(r"http://milvus:19530", env["BITSEEK_MILVUS_URI"])
        mounts = dict(v.split(":", 1) for v in service["volumes"])
        assert mounts == {"bitseek-shared": env["BITSEEK_DATA_DIR"]}
        build = service["build"]
        dockerfile = CLUSTER / build["context"] / build["dockerfile"]
        assert dockerfile.is_file()
        assert build["args"]["BITSEEK_EXTRAS"] == "milvus"  # the image needs pymilvus
        assert "ARG BITSEEK_EXTRAS" in dockerfile.read_text()
        assert (
            "milvus"
            in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "optional-dependencies"
            ]
        )
        assert service["env_file"] == ["../bitseek.env"]  # made from docker/bitseek.env.example
        assert "ports" not in service  # reached through the load balancer only
    assert (CLUSTER / ".." / "bitseek.env.example").is_file()
    assert "bitseek-shared" in compose["volumes"]


def test_the_load_balancer_serves_the_replicas(compose: dict, nginx: str) -> None:
    lb = compose["services"]["lb"]
    assert lb["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    published = lb["ports"][0].rsplit(":", 1)[1]
    assert f"listen {published};" in nginx
    assert nginx.count("{") == nginx.count("}")
    port = compose["services"]["bitseek-1"]["environment"]["BITSEEK_PORT"]
    readers = re.search(r"upstream readers \{(.*?)\}", nginx, re.S)
    writer = re.search(r"upstream writer \{(.*?)\}", nginx, re.S)
    assert readers and writer
    assert re.findall(r"server ([\w-]+):(\d+)", readers.group(1)) == [(r, port) for r in REPLICAS]
    assert re.findall(r"server ([\w-]+):(\d+)", writer.group(1)) == [("bitseek-1", port)]


def _pool(nginx: str, method: str, uri: str) -> str:
    """The upstream nginx's map picks: the first matching regex, else the default."""
    body = re.search(r'map "\$request_method:\$uri" \$pool \{(.*?)\}', nginx, re.S)
    assert body
    default = None
    for line in body.group(1).splitlines():
        line = line.split("#")[0].strip().rstrip(";")
        if not line:
            continue
        key, value = line.rsplit(None, 1)
        if key == "default":
            default = value
        elif re.search(key.strip('"')[1:], f"{method}:{uri}"):
            return value
    assert default
    return default


@pytest.mark.parametrize(
    ("method", "uri", "pool"),
    [
        ("POST", "/v1/collections/docs/search", "readers"),
        ("GET", "/v1/collections/docs/search", "readers"),
        ("POST", "/v1/collections/docs/encode", "readers"),
        ("GET", "/v1/collections/docs/items/a", "readers"),
        ("GET", "/readyz", "readers"),
        ("POST", "/v1/collections/docs/items", "writer"),
        ("DELETE", "/v1/collections/docs/items/a", "writer"),
        ("POST", "/v1/collections", "writer"),
        ("POST", "/v1/collections/docs/items/import", "writer"),
        ("POST", "/v1/admin/collections/docs/retrain", "writer"),
        ("GET", "/v1/admin/jobs/j1", "writer"),
    ],
)
def test_writes_reach_the_writer_and_reads_every_replica(
    nginx: str, method: str, uri: str, pool: str
) -> None:
    assert _pool(nginx, method, uri) == pool


def test_the_readme_gives_the_cluster_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f docker/cluster/compose.yaml up -d --build" in readme
