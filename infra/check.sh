#!/usr/bin/env bash
# Offline validation of the Bicep templates in infra/ (no Azure, no bicep binary, no network beyond PyPI
# for the first install).
#
#   infra/check.sh              create/refresh .venv-checkov if needed, then validate
#   infra/check.sh --venv-only  only create/refresh .venv-checkov (tests/infra use its pycep parser)
#
# Validation fails (exit 1) on any of:
#   * a .bicep file pycep-parser (the parser checkov uses) cannot parse - checkov itself only counts
#     parse errors and still exits 0;
#   * a failed checkov check (built-in Bicep/ARM checks + infra/checks/*.yaml);
#   * a scan that checked nothing, or in which a custom Service Bus check did not run.
# Every skip must be an inline `// checkov:skip=ID: reason` inside the resource body; the summary
# prints each skip with its reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
REQS="$ROOT/requirements-checkov.txt"
STAMP="$VENV/.installed"
# INFRA_DIR may point elsewhere (tests/infra run the gate on broken copies); the checks stay ours.
INFRA_DIR="${INFRA_DIR:-infra}"
CHECKS_DIR="$ROOT/infra/checks"
CUSTOM_CHECKS="CKV2_CUSTOM_SB_1 CKV2_CUSTOM_SB_2 CKV2_CUSTOM_SB_3 CKV2_CUSTOM_SB_4 CKV2_CUSTOM_SB_5 CKV2_CUSTOM_SB_6"

# --- environment (idempotent: reinstalls only when requirements-checkov.txt changes) -----------------
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/checkov" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    echo "infra/check.sh: installing checkov into $VENV (one-off, ~300 MB)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q --require-hashes -r "$REQS"
    echo "$want" > "$STAMP"
fi
if [[ "${1:-}" == "--venv-only" ]]; then
    exit 0
fi

# --- 1. syntax gate: every .bicep file must parse ------------------------------------------------------
mapfile -t bicep_files < <(find "$INFRA_DIR" -name '*.bicep' -not -path '*/node_modules/*' | sort)
if [[ ${#bicep_files[@]} -eq 0 ]]; then
    echo "infra/check.sh: no .bicep files under $INFRA_DIR" >&2
    exit 1
fi
"$VENV/bin/python" - "${bicep_files[@]}" <<'PY'
import sys
from pathlib import Path

from pycep import BicepParser

bad = 0
for name in sys.argv[1:]:
    try:
        BicepParser().parse(file_path=Path(name))
    except Exception as exc:  # lark raises UnexpectedToken/UnexpectedCharacters with line and column
        bad += 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"PARSE ERROR {name}: {type(exc).__name__}: {first}", file=sys.stderr)
if bad:
    print(
        f"{bad} Bicep file(s) do not parse with pycep-parser (checkov's parser). Avoid syntax it lacks "
        "(typed arrays, import/func, spread) and runs of more than four // comment lines inside an object "
        "(use /* */ there).",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"syntax: {len(sys.argv) - 1} Bicep files parse")
PY

# --- 2. checkov -------------------------------------------------------------------------------------------
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
set +e
"$VENV/bin/checkov" -d "$INFRA_DIR" --framework bicep --skip-download --compact \
    --external-checks-dir "$CHECKS_DIR" -o json > "$report"
checkov_rc=$?
set -e
"$VENV/bin/python" - "$report" "$checkov_rc" "$CUSTOM_CHECKS" <<'PY'
import json
import sys

path, rc, custom = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
try:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
except (OSError, json.JSONDecodeError) as exc:
    print(f"checkov produced no JSON report (exit {rc}): {exc}", file=sys.stderr)
    sys.exit(1)
reports = data if isinstance(data, list) else [data]
bicep = [r for r in reports if r.get("check_type") == "bicep"]
if not bicep:
    print(f"checkov scanned no Bicep resources (exit {rc}); report: {json.dumps(data)[:500]}", file=sys.stderr)
    sys.exit(1)
report = bicep[0]
summary = report.get("summary", {})
results = report.get("results", {})
passed, failed = summary.get("passed", 0), summary.get("failed", 0)
skipped, parsing_errors = summary.get("skipped", 0), summary.get("parsing_errors", 0)
print(
    f"checkov {summary.get('checkov_version', '?')}: passed {passed}, failed {failed}, skipped {skipped}, "
    f"parsing errors {parsing_errors}, resources {summary.get('resource_count', 0)}"
)
for check in results.get("skipped_checks", []):
    reason = (check.get("check_result") or {}).get("suppress_comment", "")
    print(f"  skipped {check['check_id']} on {check['resource']}: {reason}")
problems = []
for check in results.get("failed_checks", []):
    problems.append(f"FAILED {check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})")
if parsing_errors:
    problems.append(f"{parsing_errors} parsing error(s): {results.get('parsing_errors')}")
if passed + failed == 0:
    problems.append("no check was evaluated")
ran = {c["check_id"] for c in results.get("passed_checks", []) + results.get("failed_checks", [])}
missing = [c for c in custom if c not in ran]
if missing:
    problems.append(f"custom checks did not run (is infra/checks loaded?): {', '.join(missing)}")
for check in results.get("skipped_checks", []):
    reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
    if len(reason) < 20:
        problems.append(f"skip of {check['check_id']} on {check['resource']} has no real justification")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
if rc != 0:
    print(f"checkov exited {rc} although the report shows no failure", file=sys.stderr)
    sys.exit(1)
print("infra: OK")
PY
