"""The suite's own layout: test modules import shared code from support modules (tests/factories.py,
tests/support.py, tests/file_samples.py, tests/telephony_support.py, …), never from one another or
from conftest.py, whose fixtures pytest hands out by name."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) of every import, `from tests import x` read as `tests.x`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base.rstrip('.')}.{alias.name}" if base.strip(".") else base + alias.name)
                      for alias in node.names]
    return found


def _is_test_module_or_conftest(module: str) -> bool:
    parts = module.lstrip(".").split(".")
    if module.startswith(".") or parts[0] in ("tests", "conftest") or parts[0].startswith("test_"):
        name = parts[-1] if parts[0] != "tests" or len(parts) > 1 else ""
        return name == "conftest" or name.startswith("test_")
    return False


def test_no_test_module_imports_another_test_module_or_conftest():
    offenders = []
    for path in sorted([*TESTS.glob("*.py"), *(ROOT / "bench").glob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(ROOT)}:{line} imports {module}" for line, module in _imported_modules(tree)
                      if _is_test_module_or_conftest(module)]
    assert not offenders, ("move what is shared to a support module (tests/factories.py for data, "
                           "tests/support.py for the rest):\n" + "\n".join(offenders))


def test_the_check_sees_every_form_of_import():
    samples = {
        "from tests.conftest import login": True,
        "from tests.test_files_api import make_city": True,
        "import tests.test_files_corpus": True,
        "from tests import test_files_api": True,
        "from tests import conftest": True,
        "from .test_files_api import multipart": True,
        "from . import conftest": True,
        "from conftest import TEST_PASSWORD": True,
        "from tests.factories import make_city": False,
        "from tests import telegram_server": False,
        "from tests.support import login": False,
        "import pytest": False,
        "from models import Session": False,
    }
    for source, expected in samples.items():
        hits = [module for _, module in _imported_modules(ast.parse(source)) if _is_test_module_or_conftest(module)]
        assert bool(hits) is expected, source
