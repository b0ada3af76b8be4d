"""The package dependency rules, kept by a test.

`stf/` and `consensus/` are the deterministic core: they may import only the standard library (minus
clocks, randomness, decimal, asyncio and logging), msgpack and pynacl. `consensus/` orders opaque values and
never imports `stf/`. Imports are read from the syntax tree, so a lazy import inside a function counts too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE_FORBIDDEN = {
    "node", "rpc", "genesis", "asyncio", "aiohttp", "plyvel", "logging",
    "time", "random", "decimal", "secrets", "datetime", "threading", "socket",
}
FORBIDDEN = {
    "stf": CORE_FORBIDDEN | {"consensus"},
    "consensus": CORE_FORBIDDEN | {"stf"},
    "genesis": {"node", "rpc", "consensus", "asyncio", "aiohttp", "plyvel"},
    "rpc": {"node", "consensus", "plyvel"},
}


def imported_roots(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layering(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for lineno, name in imported_roots(path):
            if name in FORBIDDEN[package]:
                violations.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert violations == []


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import time\n    from asyncio import sleep\n")
    assert imported_roots(sample) == [(2, "time"), (3, "asyncio")]
