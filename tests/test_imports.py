"""Every shipped module imports (a broken import in a rarely used module is caught here, not by a user)."""

import importlib
import pkgutil

import pytest

import studio

MODULES = sorted(m.name for m in pkgutil.walk_packages(studio.__path__, prefix="studio.")
                 if m.name != "studio.__main__")  # running it is `python -m studio`


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)


def test_library_does_not_import_gradio():
    import subprocess
    import sys

    code = ("import sys, importlib, pkgutil, studio\n"
            "for m in pkgutil.walk_packages(studio.__path__, prefix='studio.'):\n"
            "    if not m.name.startswith(('studio.cli', 'studio.__main__')):\n"
            "        importlib.import_module(m.name)\n"
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def _module_level_imports(name: str, path, modules) -> set[str]:
    """The modules `name` imports when it is imported (statements at module level, in if/try too);
    `from package import submodule` counts as importing the submodule."""
    import ast

    found, todo = set(), list(ast.parse(path.read_text()).body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.If, ast.Try, ast.ExceptHandler)):
            todo += [*node.body, *getattr(node, "orelse", []), *getattr(node, "handlers", []),
                     *getattr(node, "finalbody", [])]
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return found


def test_no_import_cycles():
    """Module-level imports form no cycle (a cycle works or breaks depending on which module is imported
    first, and hides what depends on what)."""
    from pathlib import Path

    root = Path(studio.__file__).parent
    files = {("studio." + ".".join(p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    graph = {name: _module_level_imports(name, path, files) & set(files) - {name} for name, path in files.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [module, dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cli_parser_loads_neither_torch_nor_diffusers():
    """`studio --help` and argument errors answer at once: command modules import heavy packages in `run`."""
    import subprocess
    import sys

    code = "import sys, studio.cli; studio.cli.build_parser(); print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
