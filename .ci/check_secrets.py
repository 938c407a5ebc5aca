"""Secret scan for `make lint`: fails when detect-secrets finds a secret .secrets.baseline does not list.

Findings are compared by file, type and hash, not line number, so edits elsewhere in a file do not
fail the check. Not scanned: tests/ and bench/, whose credentials are throwaway values for the local
test services (fixtures, fake webhook keys), never real ones.
Accept a reviewed false positive by regenerating the baseline: `make secrets-baseline`.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".secrets.baseline"
# Local .env files hold this machine's real secrets: they are git-ignored and must never reach the baseline.
EXCLUDE_FILES = r"^(\.venv|var|\.git|\.hypothesis|\.pytest_cache|tests|bench)/|\.secrets\.baseline$|(^|/)\.env$"


def scan() -> dict:
    command = [str(Path(sys.executable).parent / "detect-secrets"), "scan", "--all-files",
               "--exclude-files", EXCLUDE_FILES]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def findings(report: dict) -> set[tuple[str, str, str]]:
    return {(name, item["type"], item["hashed_secret"]) for name, items in report["results"].items() for item in items}


def main() -> int:
    report = scan()
    if "--update" in sys.argv:
        BASELINE.write_text(json.dumps(report, indent=2) + "\n")
        print(f"detect-secrets: baseline written ({sum(len(v) for v in report['results'].values())} entries)")
        return 0
    new = findings(report) - findings(json.loads(BASELINE.read_text()))
    for name, kind, _ in sorted(new):
        print(f"detect-secrets: {kind} in {name} is not in .secrets.baseline", file=sys.stderr)
    if new:
        print("Remove the secret, or after review accept it with `make secrets-baseline`.", file=sys.stderr)
        return 1
    print("detect-secrets: no new secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
