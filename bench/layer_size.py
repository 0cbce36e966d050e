"""The layer as `sam build` makes it: its Makefile (layers/hilos_runner/Makefile) for Lambda's arm64 and
Python 3.13, the locked wheels (no boto3: the runtime has it), hilos_runner and their bytecode."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.deployed import PLATFORMS, build_layer
from bench.figures import Figure

LAMBDA_LAYER_LIMIT_MB = 250  # unzipped, all layers and the function together


def _size_mb(paths: list[Path]) -> float:
    return sum(path.stat().st_size for path in paths if path.is_file()) / 1_000_000


def figures() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as scratch:
        layer = build_layer(Path(scratch), PLATFORMS["aarch64"])
        boto = [path.name for path in layer.iterdir() if path.name.split("-")[0] in ("boto3", "botocore")]
        assert not boto, f"the layer's requirements pulled in {boto}: the runtime provides them"
        files = list(layer.rglob("*"))
        total = _size_mb(files)
        bytecode = _size_mb([path for path in files if path.suffix == ".pyc"])
        ours = _size_mb(list((layer / "hilos_runner").rglob("*")))
    return [
        Figure(
            "layer size unzipped, without boto3 (MB)",
            total,
            LAMBDA_LAYER_LIMIT_MB,
            "MB",
            "-",
            None,
            f"of which .pyc {bytecode:.1f} MB, hilos_runner {ours * 1000:.0f} KB; built by the layer's Makefile for "
            f"linux arm64, Python 3.13; baseline: Lambda's {LAMBDA_LAYER_LIMIT_MB} MB unzipped limit",
        )
    ]
