"""Imports point inward (docs/architecture.md, rule 6): the packages' allowed imports, and no cycle.

Read from the source with `ast`, so a violation fails here, named, before it becomes an import
error at run time. Imports under `if TYPE_CHECKING:` count for the allowed list (a type is a
dependency too) but not for cycles (they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Each package (or top-level module) and what of ours it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "controller.rig": set(),
    "controller.errors": set(),
    "controller.clinical": set(),
    "controller.outcome": set(),
    "controller.examples": set(),
    "controller.words": set(),
    "controller.protocol": {"controller.rig", "controller.errors"},
    "controller.config": {"controller.rig", "controller.errors", "controller.clinical"},
    "controller.summary": {"controller.outcome"},
    "controller.journal": {"controller.errors"},
    "controller.hal": {
        "controller.rig",
        "controller.protocol",
        "controller.config",
        "controller.errors",
        "firmware_sim",  # the `sim` backend runs the simulated firmware in-process
    },
    "controller.fsm": {
        "controller.rig",
        "controller.config",
        "controller.clinical",
        "controller.errors",
    },
    "controller.safety": {
        "controller.rig",
        "controller.config",
        "controller.errors",
        "controller.words",
    },
    "controller.control": {
        "controller.rig",
        "controller.protocol",
        "controller.config",
        "controller.clinical",
        "controller.hal",
        "controller.fsm",
        "controller.safety",
        "controller.errors",
        "controller.outcome",
        "controller.summary",
        "controller.words",
    },
    "firmware_sim": {"controller.protocol", "controller.rig", "controller.config"},
}
#: Where the parts are put together: they may import anything (the testing kit builds
#: runs as `alsctl run` does, and drives the simulated firmware behind a serial link)
COMPOSITION = (
    "controller.app",
    "controller.cli",
    "controller.__main__",
    "controller.testing",
    "controller.fleet",  # many runs as `alsctl run --sim --mqtt` composes one
)
#: The edges: models and the loop's published side (`control.events`, the checkpoint model),
#: never the loop's internals.
EDGES = (
    "controller.recorder",
    "controller.progress",
    "controller.report",
    "controller.mqtt",
    "controller.console",
    "controller.dashboard",
)
EDGE_MAY = {
    "controller.rig",
    "controller.config",
    "controller.errors",
    "controller.outcome",
    "controller.summary",
    "controller.journal",
    "controller.examples",
    "controller.words",
    "controller.fsm.machine",  # TransitionRecord, leaf
    "controller.fsm.plan",  # the plan from a prescription: the report's planned vs actual
    "controller.control.events",
    "controller.control.checkpoint",
    # edges may share helpers among themselves
    *EDGES,
}


def unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "firmware_sim":
        return "firmware_sim"
    if parts[0] != "controller" or len(parts) == 1:
        return None
    return f"controller.{parts[1]}"


def modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("controller/**/*.py"), *ROOT.glob("firmware_sim/**/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, only for the type checker) for every import of ours in `path`."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            typing_only |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from controller import clinical` imports the module controller.clinical
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [
            (n, id(node) in typing_only)
            for n in names
            if n.split(".")[0] in ("controller", "firmware_sim")
        ]
    return found


def test_every_package_imports_only_what_the_architecture_allows() -> None:
    known = modules()
    wrong = []
    for name, path in sorted(known.items()):
        src = unit(name)
        if src is None or src in COMPOSITION:
            continue  # the composition roots and the command line may import anything
        for imported, _ in imports(path):
            dst = unit(imported)
            if dst is None or dst == src:
                continue
            if src in EDGES:
                target = imported if imported in known else imported.rsplit(".", 1)[0]
                if not any(target == m or target.startswith(m + ".") for m in EDGE_MAY):
                    wrong.append(
                        f"{name} imports {imported} (an edge sees only the published side)"
                    )
            elif dst not in ALLOWED.get(src, set()):
                wrong.append(
                    f"{name} imports {imported} ({src} may import: "
                    f"{', '.join(sorted(ALLOWED.get(src, set()))) or 'nothing of ours'})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        src = unit(name)
        for imported, typing_only in imports(path):
            dst = unit(imported)
            if src and dst and dst != src and not typing_only:
                graph[src].add(dst)
    cycles = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)
