"""tools/check_build.py, the checks `make sam-check` runs on `sam build`'s output, on small built trees."""

import py_compile
import struct
from pathlib import Path

import pytest

from tools.check_build import EM_AARCH64, check_build

X86_64 = 62


def elf(machine: int) -> bytes:
    """The first 20 bytes of a little-endian 64-bit ELF shared object for ``machine``."""
    return b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HH", 3, machine)


def write(path: Path, content: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(build dir, source template): one function, one layer, everything as it should be."""
    source = tmp_path / "src"
    write(source / "functions" / "api" / "api.py", "def lambda_handler(event, context): ...\n")
    template = write(
        source / "template.yaml",
        "Resources:\n"
        "  Api:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: functions/api/\n"
        "  Layer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: layer/\n",
    )
    build = tmp_path / "build"
    write(
        build / "template.yaml",
        "Resources:\n"
        "  Api:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: Api\n"
        "  Layer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: Layer\n",
    )
    write(build / "Api" / "api.py", "def lambda_handler(event, context): ...\n")
    module = write(build / "Layer" / "python" / "package" / "module.py", "VALUE = 1\n")
    py_compile.compile(str(module), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    write(build / "Layer" / "python" / "package" / "_native.so", elf(EM_AARCH64))
    write(
        build / "Layer" / "python" / "package-1.0.dist-info" / "WHEEL",
        "Wheel-Version: 1.0\nTag: cp313-cp313-manylinux_2_17_aarch64\n",
    )
    return build, template


def failures(build: Path, template: Path) -> dict[str, list[str]]:
    return {check.name: check.problems for check in check_build(build, template) if not check.passed}


def test_a_build_as_lambda_runs_it_passes(tree: tuple[Path, Path]):
    assert failures(*tree) == {}


def test_an_x86_binary_or_wheel_fails(tree: tuple[Path, Path]):
    build, template = tree
    write(build / "Layer" / "python" / "other" / "_speedups.so", elf(X86_64))
    write(build / "Layer" / "python" / "other-2.0.dist-info" / "WHEEL", "Tag: cp313-cp313-manylinux_2_17_x86_64\n")
    (problems,) = failures(build, template).values()
    assert any("_speedups.so: ELF machine 62" in problem for problem in problems)
    assert any("other-2.0.dist-info" in problem for problem in problems)


def test_a_module_without_its_bytecode_or_with_timestamp_bytecode_fails(tree: tuple[Path, Path]):
    build, template = tree
    write(build / "Layer" / "python" / "package" / "uncompiled.py", "VALUE = 2\n")
    stamped = write(build / "Layer" / "python" / "package" / "stamped.py", "VALUE = 3\n")
    py_compile.compile(str(stamped), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP, doraise=True)
    problems = failures(build, template)["bytecode"]
    assert any("uncompiled.py: no uncompiled.cpython-313.pyc" in problem for problem in problems)
    assert any("stamped.cpython-313.pyc: not an unchecked-hash .pyc" in problem for problem in problems)


def test_a_function_folder_with_more_than_its_code_fails(tree: tuple[Path, Path]):
    build, template = tree
    write(build / "Api" / "requirements.txt", "requests\n")
    assert failures(build, template) == {"function folders": ["Api: unexpected requirements.txt"]}


def test_boto3_in_the_layer_fails(tree: tuple[Path, Path]):
    build, template = tree
    write(build / "Layer" / "python" / "boto3" / "__init__.pyc", b"")
    assert failures(build, template) == {"layer": ["boto3 is in the layer; the runtime provides it"]}


@pytest.mark.parametrize("path", ["hilos_runner_cli/main.py", "hilos_runner/cli.py", "tqdm/__init__.py"])
def test_the_cli_in_the_layer_fails(tree: tuple[Path, Path], path: str):
    build, template = tree
    module = write(build / "Layer" / "python" / path, "")
    py_compile.compile(str(module), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    name = path.removesuffix("/main.py").removesuffix("/__init__.py")
    assert failures(build, template) == {"layer": [f"{name} is in the layer; the CLI is not for Lambda"]}
