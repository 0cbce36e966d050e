"""Checks of what `sam build` produced (`make sam-check`): what Lambda would run, looked at before a deploy.

    python tools/check_build.py .aws-sam/build

- binaries: every ELF file in the build is aarch64 (template.yaml: arm64) and every wheel installed in the
  layer is tagged for it (or pure Python), for CPython 3.13;
- bytecode: every .py in the layer has its cp313 .pyc, hash-based and unchecked (valid whatever the zip
  does to file times), so Lambda never compiles the layer at a cold start (/opt is read-only);
- function folders: each holds exactly its source's .py files (no requirements.txt, tests or caches);
- layer: no boto3/botocore (the runtime has them), no command-line tool (the hilos-runner CLI and its progress
  bar are installed with the project, never shipped to Lambda) and at most LAYER_BUDGET_MB unzipped.

Prints one line per check; exits 1 if any fails. Run with Python 3.13 (the .pyc tag is the interpreter's).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import parse_tag
from samtranslator.yaml_helper import yaml_parse

EM_AARCH64 = 183  # ELF e_machine
ELF_MAGIC = b"\x7fELF"
# Today's layer is ~25 MB with its bytecode; past this, look at what grew before it costs cold starts.
# (Lambda's own limit is 250 MB unzipped for a function and all its layers.)
LAYER_BUDGET_MB = 60
PYC_FLAGS_UNCHECKED_HASH = 0b01  # PEP 552: bit 0 hash-based, bit 1 check_source
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")
# What only the command line uses: the CLI package (and the module it once was inside the layer) and tqdm.
CLI_PATHS = ("hilos_runner_cli", "hilos_runner/cli.py", "tqdm")


@dataclass
class Check:
    name: str
    problems: list[str]
    summary: str

    @property
    def passed(self) -> bool:
        return not self.problems


def elf_machine(path: Path) -> int | None:
    """The e_machine of an ELF file, None if the file is not ELF."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _cpython_minor(interpreter: str) -> int:
    """13 for cp313; a large number for what is not a CPython 3 tag."""
    return int(interpreter[3:]) if interpreter.startswith("cp3") and interpreter[3:].isdigit() else 999


def check_binaries(build: Path, layer: Path) -> Check:
    problems, elf_files = [], 0
    for path in sorted(p for p in build.rglob("*") if p.is_file()):
        machine = elf_machine(path)
        if machine is None:
            continue
        elf_files += 1
        if machine != EM_AARCH64:
            problems.append(f"{path.relative_to(build)}: ELF machine {machine}, not aarch64 ({EM_AARCH64})")
    wheels = sorted(layer.glob("python/*.dist-info/WHEEL"))
    for wheel in wheels:
        for line in wheel.read_text().splitlines():
            if not line.startswith("Tag:"):
                continue
            for tag in parse_tag(line.split(":", 1)[1].strip()):
                platform_ok = tag.platform == "any" or tag.platform.endswith("aarch64")
                python_ok = tag.interpreter in ("py3", "cp313") or (
                    tag.abi == "abi3" and _cpython_minor(tag.interpreter) <= 13
                )
                if not (platform_ok and python_ok):
                    problems.append(f"{wheel.parent.name}: wheel tag {tag} is not for Lambda's cp313/aarch64")
    return Check("binaries", problems, f"{elf_files} ELF files, {len(wheels)} wheels")


def check_bytecode(layer: Path) -> Check:
    problems = []
    sources = sorted(layer.rglob("*.py"))
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            problems.append(f"{source.relative_to(layer)}: no {cached.name}")
            continue
        header = cached.read_bytes()[:8]
        if header[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(
                f"{cached.relative_to(layer)}: not Python {sys.version_info.major}.{sys.version_info.minor} bytecode"
            )
        elif int.from_bytes(header[4:8], "little") != PYC_FLAGS_UNCHECKED_HASH:
            problems.append(f"{cached.relative_to(layer)}: not an unchecked-hash .pyc")
    return Check("bytecode", problems, f"{len(sources)} .py files, each with its {sys.implementation.cache_tag} .pyc")


def check_function_folders(build: Path, source_template: Path) -> Check:
    problems, summaries = [], []
    built = yaml_parse((build / "template.yaml").read_text())["Resources"]
    source = yaml_parse(source_template.read_text())["Resources"]
    for logical_id, resource in sorted(source.items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code = source_template.parent / resource["Properties"]["CodeUri"]
        expected = {path.relative_to(code) for path in code.rglob("*.py") if "__pycache__" not in path.parts}
        folder = build / built[logical_id]["Properties"]["CodeUri"]
        present = {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}
        problems += [f"{logical_id}: unexpected {extra}" for extra in sorted(present - expected)]
        problems += [f"{logical_id}: missing {missing}" for missing in sorted(expected - present)]
        summaries.append(f"{logical_id} {len(present)}")
    return Check("function folders", problems, "files: " + ", ".join(summaries))


def check_layer(layer: Path) -> Check:
    size_mb = sum(path.stat().st_size for path in layer.rglob("*") if path.is_file()) / 1_000_000
    problems = [
        f"{name} is in the layer; the runtime provides it"
        for name in RUNTIME_PACKAGES
        if (layer / "python" / name).exists()
    ]
    problems += [
        f"{name} is in the layer; the CLI is not for Lambda" for name in CLI_PATHS if (layer / "python" / name).exists()
    ]
    if size_mb > LAYER_BUDGET_MB:
        problems.append(f"{size_mb:.1f} MB unzipped, over the {LAYER_BUDGET_MB} MB budget")
    return Check("layer", problems, f"{size_mb:.1f} MB unzipped (budget {LAYER_BUDGET_MB} MB)")


def check_build(build: Path, source_template: Path) -> list[Check]:
    built = yaml_parse((build / "template.yaml").read_text())["Resources"]
    layers = [
        build / resource["Properties"]["ContentUri"]
        for resource in built.values()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    ]
    checks = [check_binaries(build, layer) for layer in layers]
    checks += [check_bytecode(layer) for layer in layers]
    checks.append(check_function_folders(build, source_template))
    checks += [check_layer(layer) for layer in layers]
    return checks


def main(argv: list[str]) -> int:
    build = Path(argv[0]) if argv else Path(".aws-sam/build")
    checks = check_build(build, Path(__file__).resolve().parent.parent / "template.yaml")
    for check in checks:
        print(f"build check {check.name}: {'ok' if check.passed else 'FAILED'} ({check.summary})")
        for problem in check.problems[:20]:
            print(f"    {problem}")
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
