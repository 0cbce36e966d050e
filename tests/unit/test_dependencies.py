"""One source of dependencies: pyproject.toml and uv.lock; the layer's requirements.txt is generated from the lock.

(`make` installs every environment with `uv sync --locked`, which refuses a uv.lock that no longer matches
its pyproject.toml, so the locks themselves cannot go stale unnoticed.)
"""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER_REQUIREMENTS = ROOT / "layers" / "hilos_runner" / "requirements.txt"


def uv() -> Path:
    """The uv make installs (Makefile: .tools/uv-<version>, the version pyproject.toml requires)."""
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["required-version"]
    path = ROOT / ".tools" / f"uv-{required.removeprefix('==')}" / "bin" / "uv"
    assert path.is_file(), f"{path} is missing: run the tests through make (make test), which installs it"
    return path


def without_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_layers_requirements_are_what_uv_lock_exports():
    exported = subprocess.run(  # noqa: S603 (fixed arguments, our own tool)
        [
            str(uv()),
            "export",
            "--frozen",
            "--no-default-groups",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "--no-annotate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert without_comments(LAYER_REQUIREMENTS.read_text()) == without_comments(exported), (
        "layers/hilos_runner/requirements.txt is stale against uv.lock: run `make lock`"
    )


def test_the_layers_requirements_pin_every_package_with_hashes_and_leave_boto3_to_the_runtime():
    lines = " ".join(without_comments(LAYER_REQUIREMENTS.read_text())).replace("\\", " ")
    packages = re.findall(r"(?:^|\s)([A-Za-z0-9._-]+)==(\S+)", lines)
    names = {name.lower() for name, _ in packages}
    assert {"aws-lambda-powertools", "pydantic", "requests"} <= names
    assert not names & {"boto3", "botocore", "s3transfer"}
    assert lines.count("--hash=sha256:") >= len(packages)


def test_the_project_declares_its_runtime_dependencies_and_its_groups_exactly_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = project["dependency-groups"]
    assert {"local", "test", "lint", "fuzz", "dev"} <= set(groups)
    declared = project["project"]["dependencies"] + [
        item for group in groups.values() for item in group if isinstance(item, str)
    ]
    assert all("==" in requirement for requirement in declared), [r for r in declared if "==" not in r]
    assert project["project"]["requires-python"].startswith(">=3.13")


def test_the_only_requirements_file_is_the_generated_layer_one():
    tracked = subprocess.run(  # fixed arguments
        ["git", "ls-files", "*requirements*.txt", "constraints.txt"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == ["layers/hilos_runner/requirements.txt"]


def test_tools_with_conflicting_pins_have_their_own_locked_project():
    for tool, package in (("checkov", "checkov"), ("sam", "aws-sam-cli")):
        project = tomllib.loads((ROOT / "tools" / tool / "pyproject.toml").read_text())
        (requirement,) = project["project"]["dependencies"]
        assert requirement.startswith(f"{package}==")
        locked = tomllib.loads((ROOT / "tools" / tool / "uv.lock").read_text())
        assert any(entry["name"] == package for entry in locked["package"])
