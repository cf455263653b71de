"""The Dockerfile's structure, read (Docker cannot run here): multi-stage, slim, non-root, and in
step with the Helm chart that runs the image."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUILD_TOOLS = re.compile(
    r"apt-get|apk |gcc|g\+\+|build-essential|make |pip wheel|python -m build|COPY \. "
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile instructions grouped by stage; continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", args, re.IGNORECASE)
            assert match, f"unparsed FROM {args!r}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((REPO / "Dockerfile").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Chart:
    """What the Helm chart expects of the image, from its default render."""

    pod: dict[str, Any]
    guard_config: dict[str, Any]

    @property
    def container(self) -> dict[str, Any]:
        container: dict[str, Any] = self.pod["containers"][0]
        return container


@pytest.fixture(scope="module")
def chart() -> Chart:
    with helm.Chart.load(REPO / "helm" / "deploy-guard") as loaded:
        manifests = loaded.render(name="guard", namespace="ops")
    deployment = yaml.safe_load(manifests["deploy-guard/templates/deployment.yaml"])
    configmap = yaml.safe_load(manifests["deploy-guard/templates/configmap.yaml"])
    return Chart(
        deployment["spec"]["template"]["spec"], yaml.safe_load(configmap["data"]["guard.yaml"])
    )


def test_parse_joins_continuations_and_groups_stages() -> None:
    text = "ARG X=1\nFROM a:1 AS one\n# note\nRUN a \\\n    && b\nFROM b:2\nUSER 5\n"

    parsed = parse(text)

    assert [(s.base, s.name) for s in parsed] == [("a:1", "one"), ("b:2", None)]
    assert parsed[0].instructions == [("RUN", "a && b")]
    assert parsed[1].args("USER") == ["5"]


def test_multi_stage_with_a_slim_python_runtime(stages: list[Stage]) -> None:
    build, runtime = stages[0], stages[-1]

    assert len(stages) >= 2
    assert re.fullmatch(
        r"python:\$\{PYTHON_VERSION\}-slim|python:3\.1[1-9][.0-9]*-slim", runtime.base
    )
    assert any("pip wheel" in run for run in build.args("RUN"))
    assert any(f"from={build.name}" in run for run in runtime.args("RUN"))


def test_final_stage_has_no_build_tools_or_source(stages: list[Stage]) -> None:
    runtime = stages[-1]
    runs = " && ".join(runtime.args("RUN"))

    assert runtime.args("COPY") == []  # wheels come in through a bind mount, not a layer
    assert not BUILD_TOOLS.search(runs), runs
    assert "--no-index" in runs
    assert re.search(r"pip uninstall --yes pip setuptools wheel", runs)


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.args("USER")
    keywords = [kw for kw, _ in runtime.instructions]

    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")


def test_entrypoint_and_cmd_run_guard_serve_on_the_charts_config(
    stages: list[Stage], chart: Chart
) -> None:
    runtime = stages[-1]
    container = chart.container

    assert json.loads(runtime.args("ENTRYPOINT")[-1]) == ["guard"]
    assert json.loads(runtime.args("CMD")[-1]) == container["args"]
    assert container["args"] == ["serve", "--config", "/etc/deploy-guard/guard.yaml"]


def test_image_matches_the_charts_user_port_and_data_dir(stages: list[Stage], chart: Chart) -> None:
    runtime = stages[-1]
    uid, gid = runtime.args("USER")[-1].split(":")

    assert int(uid) == chart.pod["securityContext"]["runAsUser"]
    assert int(gid) == chart.pod["securityContext"]["runAsGroup"]
    assert runtime.args("EXPOSE") == [str(chart.guard_config["server"]["port"])]
    assert runtime.args("WORKDIR") == [chart.guard_config["store"]["data_dir"]]


def test_build_stage_copies_every_package_the_wheel_includes(stages: list[Stage]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {args.split()[0] for args in stages[0].args("COPY")}

    assert packages <= copied, f"not copied into the build stage: {packages - copied}"
    assert {"pyproject.toml", "README.md"} <= {
        part for args in stages[0].args("COPY") for part in args.split()[:-1]
    }


def test_dockerignore_keeps_the_virtualenv_and_git_out() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()

    assert {".git", ".venv"} <= set(ignored)
