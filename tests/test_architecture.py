"""The shape of the code, checked on its syntax trees (every import, those inside functions too).

- Workers know no HTTP: nothing under tasks/ or beat/ imports api.
- The domain and the media storage know neither the HTTP API nor the queue: nothing under models/ or
  storage/ imports api or tasks.
- No cycle between the top-level packages and modules, nor between the domains of models/ (its
  subpackages and modules: a domain builds on core and on the domains below it, never the reverse).
- Tasks commit only through the unit of work (models/core/db.py): no `.commit(` or `.rollback(` in tasks/.
- One way to queue work: no `apply_async`, `send_task` or `delay` (nor Celery's message building,
  `amqp`) in api/ or tasks/ outside tasks/queue.py. A task's `self.retry(...)` is Celery redelivering
  the task that runs, not new work, and stays. beat/schedule.py sends its start-up heartbeat through
  beat's own app: importing the helper would make beat depend on tasks, which reads its schedule.
- The API reaches the workers only through the enqueue helper (and the Celery app itself, which the
  readiness check asks whether workers answer), never into a task module.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "tasks", "models", "beat", "storage")
TOP_LEVEL_MODULES = ("settings", "embedded", "logconfig", "supervise", "password_policy")
PROJECT = set(PACKAGES) | set(TOP_LEVEL_MODULES)
ENQUEUE_HELPER = "tasks.queue"
ENQUEUE_CALLS = {"apply_async", "send_task", "delay", "amqp"}
API_MAY_IMPORT_FROM_TASKS = {ENQUEUE_HELPER, "tasks.celery_app"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    paths = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    paths += [ROOT / f"{name}.py" for name in TOP_LEVEL_MODULES]
    return {_module_name(path): (path, ast.parse(path.read_text(encoding="utf-8"), str(path))) for path in paths}


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree but those under `if TYPE_CHECKING:` (read by type checkers only)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node) if not _type_checking_only(child))


def imports_of(name: str) -> set[str]:
    """Every module `name` imports at run time, anywhere in it (resolved when relative); `from x
    import y` counts as x and as x.y (y may be a module)."""
    path, tree = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def project_imports(name: str) -> set[str]:
    return {imported for imported in imports_of(name) if top(imported) in PROJECT}


def test_every_module_is_seen_with_the_imports_inside_its_functions():
    assert {"tasks.queue", "tasks.celery_app", "models.core.db", "api", "beat.schedule", "storage.backend", "settings",
            "embedded", "logconfig"} <= set(MODULES)
    assert "tasks.queue" in imports_of("api.requests.routes")  # imported inside a view only
    assert "models.core.db" in imports_of("tasks.celery_app")  # inside signal handlers only


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("tasks", {"api"}), ("beat", {"api"}), ("models", {"api", "tasks"}), ("storage", {"api", "tasks"}),
])
def test_layers_import_only_downwards(importer, forbidden):
    wrong = sorted(f"{name} imports {imported}" for name in MODULES if top(name) == importer
                   for imported in project_imports(name) if top(imported) in forbidden)
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph.get(node, ()):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        graph[top(name)].update(top(imported) for imported in project_imports(name) if top(imported) != top(name))
    return graph


def test_no_cycle_between_top_level_packages():
    assert _cycles(package_graph()) == []


def domain_of(name: str) -> str | None:
    """models.requests.rules -> requests; models.access -> access; the models package itself -> None
    (it re-exports the tables for callers outside the domain)."""
    parts = name.split(".")
    return parts[1] if parts[0] == "models" and len(parts) > 1 and parts[1] != "migrations" else None


def domain_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        domain = domain_of(name)
        if domain is None:
            continue
        graph[domain].update(other for imported in project_imports(name)
                             if (other := domain_of(imported)) not in (None, domain))
    return graph


def test_no_cycle_between_the_domains_of_models():
    graph = domain_graph()
    assert {"core", "requests", "cash", "telephony", "recordings", "files", "reports", "ops", "people",
            "directories"} <= set(graph)
    assert _cycles(graph) == []
    assert graph["core"] == set()  # the infrastructure knows no domain


def test_the_cycle_check_finds_cycles():
    assert _cycles({"api": {"tasks"}, "tasks": {"models"}, "models": {"api"}, "beat": set()}) == [
        ["api", "models", "tasks"]]
    assert _cycles({"api": {"tasks"}, "tasks": {"models"}, "models": set()}) == []


def _attribute_calls(name: str, attributes: set[str]) -> list[str]:
    """`x.attr(...)` calls and `x.attr` reads of the given attribute names, with their line."""
    path, tree = MODULES[name]
    return sorted(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and node.attr in attributes)


def test_tasks_commit_only_through_the_unit_of_work():
    found = [call for name in MODULES if top(name) == "tasks"
             for call in _attribute_calls(name, {"commit", "rollback"})]
    assert found == []


def test_work_is_queued_only_through_the_enqueue_helper():
    found = [call for name in MODULES if top(name) in ("api", "tasks") and name != ENQUEUE_HELPER
             for call in _attribute_calls(name, ENQUEUE_CALLS)]
    assert found == []


def test_the_api_reaches_the_workers_only_through_the_enqueue_helper():
    wrong = sorted(f"{name} imports {imported}" for name in MODULES if top(name) == "api"
                   for imported in project_imports(name)
                   if top(imported) == "tasks" and imported != "tasks"
                   and ".".join(imported.split(".")[:2]) not in API_MAY_IMPORT_FROM_TASKS)
    assert wrong == []


def test_beat_and_flower_load_no_task_code():
    """Their app (tasks/sender.py) is the workers' without the task modules: neither the domain nor
    SQLAlchemy is loaded, which keeps each process at about half the memory of a worker."""
    import subprocess
    import sys

    probe = ("import sys, tasks.sender, tasks.signals, models.core.probes as probes; "
             "assert tasks.signals.ENQUEUED_AT_HEADER == probes.ENQUEUED_AT_HEADER")
    loaded = ("import sys, tasks.sender; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('models', 'sqlalchemy', 'api')))")
    done = subprocess.run([sys.executable, "-c", loaded], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    same_header = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert same_header.returncode == 0, same_header.stderr
