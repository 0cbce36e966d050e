"""The layer as SAM builds it, without boto3 (the Lambda runtime has it): the pinned runtime requirements
installed for the Lambda platform (arm64, Python 3.13; the local platform if pip cannot), plus hilos_runner."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.environment import REPO_ROOT
from bench.figures import Figure, progress

LAYER = REPO_ROOT / "layers" / "hilos_runner"
LAMBDA_PLATFORM = ["--platform", "manylinux2014_aarch64", "--only-binary=:all:", "--python-version", "3.13"]
LAMBDA_LAYER_LIMIT_MB = 250  # unzipped, all layers and the function together


def _size_mb(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 1_000_000


def _install(target: Path, platform_flags: list[str]) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["-r", str(LAYER / "requirements.txt"), "-c", str(REPO_ROOT / "constraints.txt")]
    return subprocess.run([*command, *platform_flags, "--target", str(target)], capture_output=True, check=False)


def figures() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as scratch:
        target = Path(scratch, "python")
        platform = "linux arm64, Python 3.13 (Lambda's)"
        if _install(target, LAMBDA_PLATFORM).returncode != 0:
            platform = f"this machine's platform (Python {sys.version_info.major}.{sys.version_info.minor})"
            progress(f"  pip could not install for the Lambda platform; sizing for {platform}")
            failed = _install(target, [])
            if failed.returncode != 0:
                raise RuntimeError(f"pip install of the layer failed:\n{failed.stderr.decode()[-2000:]}")
        boto = [path.name for path in target.iterdir() if path.name.split("-")[0] in ("boto3", "botocore")]
        assert not boto, f"the layer's requirements pulled in {boto}: the runtime provides them"
        dependencies = _size_mb(target)
        ours = sum(file.stat().st_size for file in (LAYER / "hilos_runner").glob("*.py")) / 1_000_000
    return [
        Figure(
            "layer size unzipped, without boto3 (MB)",
            dependencies + ours,
            LAMBDA_LAYER_LIMIT_MB,
            "MB",
            "-",
            None,
            f"dependencies {dependencies:.1f} MB + hilos_runner {ours * 1000:.0f} KB; built for {platform}; "
            f"baseline: Lambda's {LAMBDA_LAYER_LIMIT_MB} MB unzipped limit",
        )
    ]
