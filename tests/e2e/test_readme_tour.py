"""The five-minute tour (the README's steps 1-4, docs/tour.md's 5-9) is executable documentation: its bash
blocks, exactly as written, run in order in one bash against a fresh local stack (as `RECONCILE_GRACE_SECONDS=5
make dev` starts it, on free ports) over real sockets, with no AWS variable set, and each block must show the lines
the docs mark ``#   `` (``…`` stands for an id), in that order, among what it prints."""

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.running_stack import REPO_ROOT, RunningStack
from tests.e2e.conftest import stack_of_tests

pytestmark = pytest.mark.e2e

TOUR_HEADING = "## Five-minute tour"
EXPECTED_PREFIX = "#   "
TOUR_TIMEOUT_SECONDS = 420  # the tour waits on a handful of sync ticks and one reconciliation grace period
_BLOCK = re.compile(r"^( *)```bash\n(.*?)^\1```", re.M | re.S)


def tour_blocks(readme: str, continued: str) -> list[str]:
    """The bash blocks of the README's tour section, then those of docs/tour.md, dedented."""
    start = readme.index(TOUR_HEADING)
    end = readme.find("\n## ", start + len(TOUR_HEADING))
    section = readme[start : end if end != -1 else len(readme)]
    return [textwrap.dedent(match.group(2)) for match in _BLOCK.finditer(section + "\n" + continued)]


def expected_lines(block: str) -> list[str]:
    return [line.strip()[len(EXPECTED_PREFIX) :].rstrip() for line in block.splitlines() if line.startswith("#   ")]


def shows_in_order(expected: list[str], printed: list[str]) -> bool:
    """Each expected line matches a printed line (``…`` matches anything), after the previous one's."""
    remaining = iter(printed)
    for line in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("…")))
        if not any(pattern.fullmatch(candidate.strip()) for candidate in remaining):
            return False
    return True


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the repository is to the tour: .local/ (the stack's) and .venv/ (this Python's)."""
    folder = tmp_path_factory.mktemp("tour")
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def stack(checkout: Path) -> Iterator[RunningStack]:
    with stack_of_tests(checkout / ".local", env={"RECONCILE_GRACE_SECONDS": "5"}) as running:
        yield running


def test_every_block_of_the_tour_shows_what_the_readme_says(stack: RunningStack, checkout: Path):
    blocks = tour_blocks((REPO_ROOT / "README.md").read_text(), (REPO_ROOT / "docs" / "tour.md").read_text())
    assert len(blocks) == 9, "the tour has 9 steps, each with its block"
    assert sum(len(expected_lines(block)) for block in blocks) >= 15, "the tour shows what its commands print"
    script = ["set -euo pipefail"]
    for number, block in enumerate(blocks, 1):
        script += [block, f"printf '\\n@@ block {number} done @@\\n'"]
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "PYTEST_"))}

    done = subprocess.run(  # noqa: S603  (bash, running the README's own blocks)
        ["bash", "-c", "\n".join(script)],  # noqa: S607  (bash from PATH, as a reader runs it)
        check=False,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=TOUR_TIMEOUT_SECONDS,
        env=environment,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, f"the tour stopped (exit {done.returncode}):\n{output[-6000:]}"
    assert "Traceback" not in output
    printed_by_block = re.split(r"^@@ block \d+ done @@$", done.stdout, flags=re.M)
    for number, block in enumerate(blocks, 1):
        printed = printed_by_block[number - 1].splitlines()
        assert shows_in_order(expected_lines(block), printed), (
            f"step {number} of the tour did not show what the README says:\n"
            f"expected (in order): {expected_lines(block)}\nprinted: {printed}"
        )
    left_behind = sorted(path.name for path in checkout.iterdir())
    assert left_behind == [".local", ".venv"], f"the tour wrote files into the checkout: {left_behind}"


def test_expected_lines_match_in_order_with_ids_left_out():
    printed = ["contacts:       2", "run:            1b2c-3d (message 9f-8e)", "follow:         ..."]
    assert shows_in_order(["contacts:       2", "run:            … (message …)"], printed)
    assert not shows_in_order(["run:            … (message …)", "contacts:       2"], printed)
    assert not shows_in_order(["contacts:       3"], printed)
