"""Write the JSON Schema files, the AsyncAPI document and docs/CONTRACT.md's generated sections from the code.

`--check` fails when any of them is stale.

Run `python -m schemas.generate` after changing a model, and commit the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from schemas.catalog import EVENT_MODELS
from schemas.documents import asyncapi_document, cloudevent_schema, event_schema, render_contract

PACKAGE_DIR = Path(__file__).resolve().parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"
CONTRACT_DOC = PACKAGE_DIR.parent / "docs" / "CONTRACT.md"


def _json_text(document: dict[str, Any]) -> str:
    """Stable JSON: sorted keys, two-space indent, UTF-8 kept readable, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _yaml_text(document: dict[str, Any]) -> str:
    """Stable YAML with sorted keys; long strings are not folded so diffs stay line-for-line."""
    header = "# Generated from the pydantic models in schemas/ by `python -m schemas.generate`. Do not edit.\n"
    body = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=10_000, default_flow_style=False)
    return header + body


def expected_files() -> dict[str, str]:
    """Every generated file, by path relative to the output directory, with its exact content."""
    files = {f"{JSON_DIR}/cloudevent.json": _json_text(cloudevent_schema())}
    for model in EVENT_MODELS:
        files[f"{JSON_DIR}/{model.routing_key()}.json"] = _json_text(event_schema(model))
    files[ASYNCAPI_FILE] = _yaml_text(asyncapi_document())
    return files


def _leftovers(out_dir: Path, expected: dict[str, str]) -> list[str]:
    """JSON files in the schema directory that no model produces any more."""
    json_dir = out_dir / JSON_DIR
    if not json_dir.is_dir():
        return []
    present = {f"{JSON_DIR}/{path.name}" for path in json_dir.glob("*.json")}
    return sorted(present - expected.keys())


def generate(out_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Write every generated file under `out_dir`, remove stale schema files; return the paths written."""
    expected = expected_files()
    for name in _leftovers(out_dir, expected):
        (out_dir / name).unlink()
    written = []
    for name, text in expected.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(out_dir: Path = PACKAGE_DIR) -> list[str]:
    """Names of generated files that are missing, differ from the models, or should no longer exist."""
    expected = expected_files()
    stale = []
    for name, text in expected.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return sorted(stale + _leftovers(out_dir, expected))


def main(argv: list[str] | None = None) -> int:
    """Command line: generate, or with --check report stale files and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output directory (default: schemas/)")
    args = parser.parse_args(argv)
    contract = CONTRACT_DOC.read_text(encoding="utf-8")
    if args.check:
        stale = check(args.out) + ([str(CONTRACT_DOC)] if render_contract(contract) != contract else [])
        for name in stale:
            print(f"out of date: {args.out / name}", file=sys.stderr)  # an absolute name stays as it is
        if stale:
            print("run `python -m schemas.generate` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(args.out):
        print(path)
    CONTRACT_DOC.write_text(render_contract(contract), encoding="utf-8")
    print(CONTRACT_DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
