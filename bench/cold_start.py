"""Benchmark 2: cold start - importing function_app.py in a fresh interpreter.

Compared, in the same run, with importing only the app's declared runtime dependencies (the packages of
requirements.txt). Each sample is a new interpreter with no app settings that times its own import with
``time.perf_counter``; the two kinds alternate, so drift hits both. ``-X importtime`` gives the breakdown
(top self-time entries of our own modules and of the dependencies), and one more fresh import runs with
``socket`` patched to refuse connections, to prove that importing makes no network call.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from bench.report import put_median

ROOT: Final = Path(__file__).resolve().parents[1]
DEPENDENCIES: Final = (
    "azure.functions",
    "azurefunctions.extensions.bindings.servicebus",
    "azure.identity",
    "azure.servicebus",
    "urllib3",
    "certifi",
)
OWN_PREFIXES: Final = ("function_app", "shared")
_TIMED = "import time\nstarted = time.perf_counter()\n{imports}\nprint(time.perf_counter() - started)\n"
_NO_NETWORK = (
    "import socket\n"
    "def refuse(*a, **k): raise AssertionError('network call at import time')\n"
    "socket.socket.connect = refuse\n"
    "socket.socket.connect_ex = refuse\n"
    "socket.create_connection = refuse\n"
    "socket.getaddrinfo = refuse\n"
    "import function_app\n"
    "print(len(function_app.app.get_functions()))\n"
)
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    # No app settings, no inherited PYTHON* variables: what the worker sees before it reads settings.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )


def _import_seconds(imports: str) -> float:
    return float(_python(_TIMED.format(imports=imports)).stdout.strip().splitlines()[-1])


def _own(module: str) -> bool:
    return module.split(".", 1)[0] in OWN_PREFIXES


def importtime_breakdown(top: int = 8) -> dict[str, Any]:
    """Self time per module from ``-X importtime``: our modules vs everything else."""
    stderr = _python("import function_app", "-X", "importtime").stderr
    entries = [(match[4], int(match[1])) for match in _IMPORTTIME.finditer(stderr)]
    own = sorted(((name, us) for name, us in entries if _own(name)), key=lambda item: -item[1])
    deps = sorted(((name, us) for name, us in entries if not _own(name)), key=lambda item: -item[1])
    return {
        "own_self_ms": sum(us for _, us in own) / 1000,
        "deps_self_ms": sum(us for _, us in deps) / 1000,
        "modules_own": len(own),
        "modules_deps": len(deps),
        "top_own": [{"module": name, "self_ms": us / 1000} for name, us in own[:top]],
        "top_deps": [{"module": name, "self_ms": us / 1000} for name, us in deps[:top]],
    }


def network_at_import() -> bool:
    """True when importing function_app tried to open a connection (it must not)."""
    try:
        result = _python(_NO_NETWORK)
    except subprocess.CalledProcessError as failed:
        if "network call at import time" in failed.stderr:
            return True
        raise
    return int(result.stdout.strip()) < 1


def run(runs: int = 15) -> dict[str, Any]:
    app_imports = "import function_app"
    dep_imports = "\n".join(f"import {name}" for name in DEPENDENCIES)
    _import_seconds(app_imports)  # compile .pyc files and warm the page cache once
    _import_seconds(dep_imports)
    app: list[float] = []
    deps: list[float] = []
    for _ in range(runs):
        app.append(_import_seconds(app_imports))
        deps.append(_import_seconds(dep_imports))
    result: dict[str, Any] = {"runs": runs}
    put_median(result, "function_app_ms", [seconds * 1000 for seconds in app])
    put_median(result, "dependencies_ms", [seconds * 1000 for seconds in deps])
    put_median(result, "ratio", [a / d for a, d in zip(app, deps, strict=True)])
    result["network_at_import"] = network_at_import()
    result["importtime"] = importtime_breakdown()
    return result
