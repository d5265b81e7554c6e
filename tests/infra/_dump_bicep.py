"""Parse every Bicep file under a directory with pycep-parser and print the result as JSON.

Runs under ``.venv-checkov/bin/python`` (pycep-parser is pinned there by checkov; the main environment
must not depend on checkov). Output: ``{"<path relative to the directory>": <parsed file>, ...}``.
Exit status 1, with the file and the parser's message on stderr, if any file does not parse.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    parser: Any = importlib.import_module("pycep").BicepParser()
    parsed: dict[str, Any] = {}
    errors: list[str] = []
    for path in sorted(root.rglob("*.bicep")):
        try:
            parsed[path.relative_to(root).as_posix()] = parser.parse(file_path=path)
        except Exception as exc:  # lark's UnexpectedInput family carries line and column
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    json.dump(parsed, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
