"""The on-VPS agent stays one stdlib-only file whose opening index tells the truth."""

import ast
import re
import sys
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "fleet" / "on_vps" / "vpsmanager.py"


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vpsmanager_under_test", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_imports_only_the_standard_library():
    tree = ast.parse(AGENT.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    assert names - set(sys.stdlib_module_names) - {"__future__"} == set()


def test_its_index_lists_every_subcommand_with_its_lock_scope():
    docstring = _module().__doc__
    listed = dict(re.findall(r"^  ([a-z-]+)\s+(none|global|site\+global|site)\s+\S", docstring, flags=re.M))
    assert listed == {name: scope for name, (_, scope) in _module().COMMANDS.items()}
