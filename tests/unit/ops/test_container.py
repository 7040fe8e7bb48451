"""The Dockerfile and compose.yaml, checked without Docker: multi-stage, slim, non-root, no secrets, a volume,
a health check on /healthz, and the install step CI proves."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from bot.util.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += " " + line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, rest = pending.strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in parsed:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


DOCKERFILE = instructions(ROOT / "Dockerfile")
FINAL = stages(DOCKERFILE)[-1]


def final(keyword: str) -> list[str]:
    return [rest for k, rest in FINAL if k == keyword]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def test_multi_stage_with_a_slim_runtime_that_copies_only_the_built_environment() -> None:
    froms = [rest for k, rest in DOCKERFILE if k == "FROM"]
    assert len(froms) >= 2
    assert all(re.search(r"-slim\b", image) for image in froms)
    assert re.search(r"\bAS build\b", froms[0], re.IGNORECASE)
    copies = final("COPY")
    assert copies and all(c.startswith("--from=build") for c in copies), copies
    assert not final("ADD")


def test_runs_as_an_unprivileged_user() -> None:
    users = final("USER")
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in run and f" {user}" in run for run in final("RUN"))


def test_no_secret_or_env_file_is_baked_in() -> None:
    for keyword, rest in DOCKERFILE:
        if keyword in {"COPY", "ADD"}:
            assert ".env" not in rest and not rest.split()[0] == ".", rest
        if keyword in {"ENV", "ARG"}:
            for name in re.findall(r"([A-Z_]+)=", rest) + rest.split()[:1]:
                assert not any(word in name for word in SECRET_WORDS), name
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored


def test_state_lives_on_a_declared_volume() -> None:
    volumes = final("VOLUME")
    assert volumes and '"/data"' in volumes[-1]
    assert env_of(FINAL)["DATABASE_URL"] == "sqlite:////data/bot.db"


def test_healthcheck_asks_the_health_endpoint_on_the_metrics_port() -> None:
    [check] = final("HEALTHCHECK")
    env = env_of(FINAL)
    assert env["METRICS_PORT"] and env["METRICS_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{env['METRICS_PORT']}/healthz" in check


def test_install_step_is_the_one_ci_proves() -> None:
    [install] = [rest for k, rest in DOCKERFILE if k == "RUN" and "pip install" in rest]
    arguments = install.split("pip ", 1)[1]  # "install --no-cache-dir ."
    assert arguments.endswith(" .")  # the project itself, not an editable or a pinned copy
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any("pip" in line and line.endswith(f" {arguments}") for line in ci_lines), arguments


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_the_bot_with_its_volume_and_secrets_from_env_file() -> None:
    spec = compose()
    bot = spec["services"]["bot"]
    assert bot["build"] == "."
    # The single-process layout: `docker compose up bot` starts it (naming a service enables its profile);
    # a bare `docker compose up` runs the sharded layout instead, never both on one token.
    assert bot["profiles"] == ["single"]
    assert "bot-data:/data" in bot["volumes"] and "bot-data" in spec["volumes"]
    assert [entry["path"] for entry in bot["env_file"]] == [".env"]
    assert not any(word in name for name in bot["environment"] for word in SECRET_WORDS)
    assert bot["environment"]["DATABASE_URL"] == "sqlite:////data/bot.db"
    # The metrics port reaches the host's loopback only.
    assert all(port.startswith("127.0.0.1:") for port in bot["ports"])


def test_compose_postgres_runs_by_default_with_a_health_check() -> None:
    spec = compose()
    postgres = spec["services"]["postgres"]
    assert "profiles" not in postgres  # `docker compose up` starts it with the shard processes
    assert postgres["image"].startswith("postgres:")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "POSTGRES_PASSWORD" not in postgres.get("environment", {})  # from .env, never in the file
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_compose_runs_two_bot_processes_with_disjoint_shards_on_postgres() -> None:
    spec = compose()
    shards = {name: s for name, s in spec["services"].items() if name.startswith("bot-shard-")}
    assert len(shards) == 2
    held: list[int] = []
    for service in shards.values():
        assert service["build"] == "." and "profiles" not in service
        assert [entry["path"] for entry in service["env_file"]] == [".env"]
        environment = service["environment"]
        assert not any(word in name for name in environment for word in SECRET_WORDS)
        assert environment["DATABASE_URL"].startswith("postgresql://bot:${POSTGRES_PASSWORD")
        assert environment["DATABASE_URL"].endswith("@postgres:5432/bot")
        assert environment["SHARD_COUNT"] == "2"
        held += [int(i) for i in environment["SHARD_IDS"].split(",")]
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    assert sorted(held) == [0, 1], "each shard in exactly one process"
    published = [port.split(":")[1] for s in shards.values() for port in s["ports"]]
    assert len(set(published)) == len(published), "each process's metrics on its own host port"


def test_the_sample_dashboard_queries_only_metrics_the_bot_exports() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exported = Metrics().render().decode()
    # A histogram is declared under its base name; a counter under `..._total`.
    declared = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (\S+)", exported, re.MULTILINE)}
    queried = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"discord_bot_[a-z_]+", target["expr"])
    }
    assert queried
    assert queried <= declared, sorted(queried - declared)
