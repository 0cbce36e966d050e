"""tools/find-python: the Python 3.13 that make uses, found where it is (PATH, pyenv, uv), or a clear refusal."""

import os
import subprocess
import sys
from pathlib import Path

FIND_PYTHON = Path(__file__).resolve().parents[2] / "tools" / "find-python"


def find_python(**environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own script)
        [str(FIND_PYTHON)], env={"PATH": "/usr/bin:/bin", **environment}, capture_output=True, text=True, check=False
    )


def test_the_tests_run_on_the_lambda_runtimes_python():
    assert sys.version_info[:2] == (3, 13)


def test_a_python_asked_for_by_name_is_taken_when_it_is_313():
    found = find_python(PYTHON=sys.executable)
    assert found.returncode == 0, found.stderr
    assert os.path.samefile(found.stdout.strip(), sys.executable) or found.stdout.strip().endswith("python3.13")


def test_a_python_asked_for_by_name_is_refused_with_a_reason_when_it_is_not_313():
    found = find_python(PYTHON="/bin/sh")
    assert found.returncode == 1
    assert "is not a Python 3.13" in found.stderr


def test_a_pyenv_installed_313_is_found_without_being_selected(tmp_path: Path):
    versions = tmp_path / "versions" / "3.13.9" / "bin"
    versions.mkdir(parents=True)
    (versions / "python3.13").symlink_to(sys.executable)
    found = find_python(PYENV_ROOT=str(tmp_path), HOME=str(tmp_path))
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip().startswith(str(tmp_path))  # found in pyenv's versions, not elsewhere
