"""bentofile.yaml and pyproject.toml cannot drift apart.

The bento carries only the files bentofile.yaml includes (service.py, models/, serving/, the
prediction log of monitoring/), so its
`python.packages` must be exactly the [project] dependencies those files import (bentoml itself
excluded: the image installs it), with the same version specifiers as pyproject.toml.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

from tests.support import ROOT

FIRST_PARTY = {
    "models",
    "serving",
    "monitoring",
    "batch",
    "streaming",
    "service",
    "benchmarks",
    "tests",
}
PROVIDED = {"bentoml"}  # installed by the bento's image itself


def _name(requirement: str) -> str:
    """The canonical distribution name of a requirement (PEP 503: case and -_. folded)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _runtime() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {_name(r): r for r in pyproject["project"]["dependencies"]}


def _bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())


def _bento_files() -> list[Path]:
    files = sorted({p for pattern in _bentofile()["include"] for p in ROOT.glob(pattern)})
    assert files, "bentofile.yaml includes no file"
    return [p for p in files if p.suffix == ".py"]


def _third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names)


def _needed_distributions() -> dict[str, str]:
    """Each distribution the bento's code imports, with one module that needs it."""
    runtime = _runtime()
    owners = importlib.metadata.packages_distributions()
    needed: dict[str, str] = {}
    for path in _bento_files():
        for module in _third_party_imports(path):
            candidates = {_name(d) for d in owners.get(module, [])}
            declared = candidates & runtime.keys()
            assert declared, (
                f"{path.relative_to(ROOT)} imports {module!r}, which no [project] dependency "
                f"of pyproject.toml provides (installed by: {sorted(candidates) or 'nothing'})"
            )
            for dist in declared:
                needed.setdefault(dist, f"{path.relative_to(ROOT)}: {module}")
    return needed


def test_the_bento_lists_exactly_the_runtime_dependencies_its_code_imports():
    runtime = _runtime()
    needed = _needed_distributions().keys() - PROVIDED
    expected = sorted(runtime[d] for d in needed)
    listed = sorted(_bentofile()["python"]["packages"])
    assert listed == expected, (
        "bentofile.yaml python.packages differs from the pyproject.toml dependencies that "
        f"service.py, models/ and serving/ import; missing: {sorted(set(expected) - set(listed))}"
        f", not needed or different specifier: {sorted(set(listed) - set(expected))}"
    )


def test_the_check_sees_the_imports_that_matter():
    # Guards the test above against passing vacuously (no files found, nothing mapped).
    needed = _needed_distributions()
    assert {"bentoml", "scikit-learn", "pydantic", "starlette", "redis"} <= needed.keys()
    assert "kafka-python" not in needed  # the bridge is not in the bento


def _first_party_imports(path: Path) -> set[str]:
    """The project's modules `path` imports, absolute or relative, at any depth in the file."""
    package = path.relative_to(ROOT).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in FIRST_PARTY)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module.split(".")[0] in FIRST_PARTY:
                found.add(module)
    return found


def _module_file(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_the_bentos_code_imports_only_files_the_bento_carries():
    # A module outside bentofile.yaml's include serves on a checkout and fails in the image
    # ("No module named 'batch'"): tests/deploy/test_image.py would find it, minutes later.
    carried = set(_bento_files())
    missing = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in carried
        for module in _first_party_imports(path)
        if _module_file(module) not in carried
    )
    assert missing == []


def test_the_import_check_reads_absolute_and_relative_imports():
    assert _first_party_imports(ROOT / "service.py") >= {"models.contract", "serving.settings"}
    relative = _first_party_imports(ROOT / "batch" / "report.py")
    assert {"batch.scoring", "models.stability"} <= relative
    assert _module_file("batch.scoring") == ROOT / "batch" / "scoring.py"
    assert _module_file("monitoring") == ROOT / "monitoring" / "__init__.py"
