"""The package is cut by pipeline stage: no import cycles between its parts, short functions,
and a module map (docs/design.md) that names every module there is."""
import ast
import re

from conftest import ROOT

PACKAGE = ROOT / "bibsnet_trainer"
MAX_FUNCTION_LINES = 80


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(module_parts: list[str]) -> str:
    """The part of the package a module belongs to: its subpackage, or the top-level module."""
    return module_parts[1] if len(module_parts) > 1 else ""


def _runtime_imports(tree: ast.Module):
    """Import statements outside `if TYPE_CHECKING:` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and id(n) not in skipped]


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[:-1]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if node.level:
                target = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "bibsnet_trainer":
                target = node.module.split(".")
            else:
                continue
            a, b = _unit(parts), _unit(target)
            if b and a != b and ((PACKAGE / b).is_dir() or (PACKAGE / f"{b}.py").exists()):
                graph.setdefault(a, set()).add(b)
    return graph


def test_no_import_cycles_between_the_parts_of_the_package():
    graph = _unit_graph()
    assert graph["cli"] and "group" in graph["cli"]          # the graph is read (not trivially empty)
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]):
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(trail + [unit, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [unit])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])
    # the pipeline's stages sit above what they share, never below it
    for low in ("errors", "images", "labels", "volumes", "bids", "reports", "evaluation", "models", "nnunet"):
        assert not graph.get(low, set()) & {"cli", "group", "participant"}, low


def test_functions_are_short():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_design_module_map_names_every_module():
    readme = (ROOT / "docs" / "design.md").read_text()
    section = readme[readme.index("## Module map"):]
    table = "\n".join(line for line in section.splitlines()[1:] if line.startswith("|"))
    named = set(re.findall(r"`([\w/]+\.py)`", table))
    modules = {p.relative_to(PACKAGE).as_posix() for p in _modules() if p.name != "__init__.py"}
    assert modules - named == set(), "modules missing from the module map of docs/design.md"
    assert named - modules == set(), "the module map of docs/design.md names modules that do not exist"
