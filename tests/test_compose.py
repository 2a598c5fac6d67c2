"""docker-compose.yml and the Dockerfile, read as text: no Docker engine needed."""

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = {"service_healthy", "service_completed_successfully"}


def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "version" not in compose, "the Compose spec has no version key"
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else command


def dockerfile_copies() -> tuple[set[str], list[str]]:
    """The paths the Dockerfile copies from the build context, and its CMD."""
    copied: set[str] = set()
    cmd: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            copied |= {w.removeprefix("./").rstrip("/") or "." for w in sources}
        elif words[:1] == ["CMD"]:
            cmd = json.loads(line[len("CMD") :])
    return copied, cmd


def first_party_imports(path: Path) -> set[str]:
    """Top-level packages of this repo that the file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if (ROOT / name / "__init__.py").is_file()}


def needs(command: list[str]) -> set[str]:
    """Check the command names code in the repo; return the paths it needs in the image."""
    if command[0] == "uvicorn":
        module, attr = command[1].split(":")
        source = ROOT / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"{command[1]}: no {source}"
        assert re.search(rf"^{re.escape(attr)}\s*(:.*)?=", source.read_text(), re.M), command
    elif command[:2] == ["python", "-m"]:
        source = ROOT / command[2].replace(".", "/") / "__main__.py"
        assert source.is_file(), f"{command}: no {source}"
    elif command[0] == "alembic":
        assert (ROOT / "alembic.ini").is_file()
        source = ROOT / "migrations" / "env.py"
        assert source.is_file()
        return {"alembic.ini", "migrations"} | first_party_imports(source)
    else:
        raise AssertionError(f"unknown command {command}")
    return {source.relative_to(ROOT).parts[0]} | first_party_imports(source)


def test_services_and_images() -> None:
    found = services()
    assert {"timescaledb", "redis", "migrate", "api", "worker"} <= found.keys()
    assert found["timescaledb"]["image"].startswith("timescale/timescaledb:")
    redis = " ".join(argv(found["redis"]["command"]))
    assert "--appendonly yes" in redis
    assert "--appendfsync everysec" in redis


def test_dependencies_wait_for_health_or_completion() -> None:
    found = services()
    for name, service in found.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert spec["condition"] in CONDITIONS, f"{name} -> {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in found[dependency], f"{dependency} has no healthcheck"


def test_worker_can_scale() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_built_services_run_code_the_image_contains() -> None:
    found = services()
    copied, cmd = dockerfile_copies()
    commands = {"Dockerfile CMD": cmd}
    commands |= {name: argv(s["command"]) for name, s in found.items() if "build" in s}
    assert {"migrate", "api", "worker"} <= commands.keys()
    for name, command in commands.items():
        missing = needs(command) - copied if "." not in copied else set()
        assert not missing, f"{name} needs {missing}, which the Dockerfile does not copy"
    for name, service in found.items():
        if "build" in service:
            for key in ("DATABASE_URL", "REDIS_URL"):
                assert urlsplit(service["environment"][key]).hostname in found, (name, key)
