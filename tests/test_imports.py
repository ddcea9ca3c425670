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
