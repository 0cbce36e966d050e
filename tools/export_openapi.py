"""Write run_api's OpenAPI document to schemas/openapi.json (`make openapi`), for frontends that generate typed
clients without a running stack. tests/integration/test_run_api.py fails when the file and /openapi.json differ."""

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "schemas" / "openapi.json"


def document_text() -> str:
    sys.path[:0] = [str(REPO_ROOT / "layers" / "hilos_runner"), str(REPO_ROOT / "functions" / "run_api")]
    import run_api  # noqa: PLC0415  (importable once its folder is on the path)
    from hilos_runner.api import openapi_document  # noqa: PLC0415

    document = openapi_document(run_api.app, title=run_api.API_TITLE, version=run_api.API_VERSION)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    output = parser.parse_args().output
    output.write_text(document_text(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
