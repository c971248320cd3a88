"""The layout's promises: data flows one way (no module imports "upward") and no module-level
import cycle, so any module can be imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import commcal

PACKAGE = Path(commcal.__file__).parent


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def source(name: str) -> Path:
    path = PACKAGE.parent / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, *, top_level_only: bool) -> set[str]:
    """The commcal modules `name` imports: at module level only (what runs on import), or
    anywhere (function bodies too; `if TYPE_CHECKING:` blocks never count)."""
    known = set(module_names())
    tree = ast.parse(source(name).read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, top)
                continue
            inner = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("commcal"))
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("commcal"):
                base = child.module or ""
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in known else base)
            if inner or not top_level_only:
                visit(child, inner)

    visit(tree, True)
    return found - {name}


def test_no_module_level_import_cycle() -> None:
    graph = {name: imports(name, top_level_only=True) for name in module_names()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Whichever module a plugin or a test imports first, it loads (an import cycle would
    show up as an ImportError for one order only)."""
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'commcal']:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run(
        # __main__ runs the CLI when imported: `python -m commcal` is its only use.
        [sys.executable, "-c", script, *(n for n in module_names() if n != "commcal.__main__")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


# What each part must never import, anywhere in it (function bodies included).
FORBIDDEN = {
    # The model and parser know nothing of networks, the ledger or publishing.
    "commcal.calendar": (
        "commcal.channels",
        "commcal.ledger",
        "commcal.publish",
        "commcal.scheduler",
        "commcal.views",
        "commcal.cli",
        "commcal.project",
        "commcal.deliveries",
        "commcal.compose",
        "commcal.check",
        "commcal.validate",
        "commcal.plan",
    ),
    # Adapters get a Message and send it: no project, calendar, ledger or publisher.
    "commcal.channels": (
        "commcal.calendar",
        "commcal.project",
        "commcal.ledger",
        "commcal.publish",
        "commcal.scheduler",
        "commcal.views",
        "commcal.cli",
        "commcal.deliveries",
        "commcal.compose",
        "commcal.check",
        "commcal.validate",
        "commcal.plan",
    ),
    "commcal.ledger": ("commcal.publish", "commcal.scheduler", "commcal.views", "commcal.cli"),
    # Views format results; the publisher's workings are not theirs to reach.
    "commcal.views": (
        "commcal.cli",
        "commcal.scheduler",
        "commcal.publish.publisher",
        "commcal.publish.recorder",
        "commcal.publish.retry",
    ),
    # The stages, in pipeline order: none reaches a later one.
    "commcal.deliveries": ("commcal.compose", "commcal.check", "commcal.validate"),
    "commcal.compose": ("commcal.check", "commcal.validate"),
    "commcal.check": ("commcal.validate",),
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_module_imports_upward() -> None:
    found = []
    for name in module_names():
        for part, banned in FORBIDDEN.items():
            if not _under(name, part):
                continue
            for target in imports(name, top_level_only=False):
                if any(_under(target, b) for b in banned):
                    found.append(f"{name} imports {target}")
    assert found == []


def test_only_the_entry_points_import_the_cli() -> None:
    users = [
        name for name in module_names() if "commcal.cli" in imports(name, top_level_only=False)
    ]
    # commcal.entry is the console script (the cron minute's shortcut, then the full CLI); the
    # commcal.*_cli modules are part of the command line too: typer groups and commands cli.py
    # registers, whose bodies use cli's helpers (loading, exit codes), never at import.
    commands = [name for name in users if name.endswith("_cli")]
    assert sorted(set(users) - set(commands)) == ["commcal.entry"]
    assert "commcal.export_cli" in commands  # the walk sees them
    for name in commands:
        assert "commcal.cli" not in imports(name, top_level_only=True), name


def test_the_walk_sees_imports() -> None:
    """The checks above would pass on a walk that finds nothing: it must find real edges."""
    assert "commcal.deliveries" in imports("commcal.check", top_level_only=True)
    assert "commcal.compose" in imports("commcal.check", top_level_only=True)
    assert "commcal.validate" in imports("commcal.cli", top_level_only=False)
    assert "commcal.validate" not in imports("commcal.cli", top_level_only=True)


def test_loading_and_planning_modules_import_no_jinja2() -> None:
    """Jinja is imported when the first template is compiled, not when `commcal.render` is
    imported (its filters used to be marked with jinja2.pass_context at import time)."""
    script = (
        "import sys\n"
        "import commcal.render, commcal.plan, commcal.validate, commcal.project\n"
        "print('jinja2' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
