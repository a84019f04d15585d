"""The package's folders are layers: a module imports only its own layer and the layers below it, never a
higher one, and no modules import each other in a circle. Read from the source (ast), so lazy imports inside
functions and imports under TYPE_CHECKING count too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_annotate"
# Bottom to top, as DESIGN.md orders the pipeline: files < media < faces < models < outputs < run < api < cli.
LAYERS = ["files", "media", "faces", "models", "outputs", "run", "api", "cli"]


def module_name(path: Path) -> str:
    parts = ["fer_annotate", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """The layer index of a module of the package; None for the package root (it holds only __version__)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else -1


def imports(path: Path, source: str | None = None) -> set[str]:
    """The fer_annotate modules a file (or `source` given for it) imports: absolute or relative, anywhere."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if m == "fer_annotate" or m.startswith("fer_annotate.")}


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): {m for m in imports(p) if m in modules and m != module_name(p)} for p in files}


def test_every_module_sits_in_a_layer():
    strays = [m for m in graph() if layer(m) == -1]
    assert not strays, f"modules outside the layers {LAYERS}: {strays}; add their folder to LAYERS in its place"


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} imports {dep}" for m, deps in graph().items() for dep in sorted(deps)
              if layer(m) is not None and layer(dep) is not None and layer(dep) > layer(m)]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(edges[module]):
            if dep.startswith(f"{module}."):
                continue  # a package importing its own submodule is no cycle
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [*path, dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module, [module])):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_walk_sees_lazy_and_relative_imports():
    """An import inside a function counts, and a relative import resolves to its package's module."""
    path = PACKAGE / "faces" / "example.py"
    source = "def f():\n    from fer_annotate.run import pipeline\n    from ..models import bundle\n"
    assert imports(path, source) >= {"fer_annotate.run.pipeline", "fer_annotate.models.bundle"}
    assert layer("fer_annotate.run.pipeline") > layer(module_name(path))
