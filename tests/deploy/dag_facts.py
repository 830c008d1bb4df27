"""What the Airflow DAG (batch/dags/churn_batch.py) does with churn-batch's exit codes, read
from its source: it imports Airflow, which this project's environment does not have.

- `exit_codes`: the module's EXIT_* constants; `constants`: its other integer constants.
- `not_retried`: the codes for which `score` raises AirflowFailException (or a subclass of it
  defined in the file): Airflow fails such a task at once, without a retry.
- `settings`: the defaults in SETTINGS; `flags`: the options `score` always passes;
  `max_active_runs`: the @dag argument.
"""

import ast
from dataclasses import dataclass

from tests.support import ROOT

DAG_FILE = ROOT / "batch" / "dags" / "churn_batch.py"
NO_RETRY = "AirflowFailException"


@dataclass(frozen=True)
class DagFacts:
    exit_codes: dict[str, int]
    constants: dict[str, int]
    not_retried: set[int]
    settings: dict[str, str]
    flags: list[str]
    max_active_runs: int


def _constants(tree: ast.Module) -> dict[str, int]:
    found: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs = zip(target.elts, value.elts, strict=True)
            else:
                pairs = zip([target], [value], strict=True)
            for name, constant in pairs:
                if (
                    isinstance(name, ast.Name)
                    and isinstance(constant, ast.Constant)
                    and isinstance(constant.value, int)
                ):
                    found[name.id] = constant.value
    return found


def _no_retry_exceptions(tree: ast.Module) -> set[str]:
    names = {NO_RETRY}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id in names for b in node.bases
        ):
            names.add(node.name)
    return names


def _raised(body: list[ast.stmt]) -> str | None:
    for node in body:
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            return func.id if isinstance(func, ast.Name) else None
    return None


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    (found,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    return found


def read() -> DagFacts:
    tree = ast.parse(DAG_FILE.read_text(), str(DAG_FILE))
    constants = _constants(tree)
    exit_codes = {k: v for k, v in constants.items() if k.startswith("EXIT_")}
    no_retry = _no_retry_exceptions(tree)
    score = _function(tree, "score")
    not_retried = set()
    for node in ast.walk(score):
        test = node.test if isinstance(node, ast.If) else None
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Name)
            and _raised(node.body) in no_retry
        ):
            not_retried.add(constants[test.comparators[0].id])
    (settings_node,) = [
        n
        for n in tree.body
        if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "SETTINGS"
    ]
    settings = {k: v[0] for k, v in ast.literal_eval(settings_node.value).items()}
    flags = [
        n.value
        for n in ast.walk(score)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("--")
        and n.value != "--model"  # only with a model tag set
    ]  # fmt: skip
    (dag_call,) = [
        d for d in _function(tree, "churn_batch").decorator_list if isinstance(d, ast.Call)
    ]
    (runs,) = [k.value for k in dag_call.keywords if k.arg == "max_active_runs"]
    assert isinstance(runs, ast.Constant)
    return DagFacts(exit_codes, constants, not_retried, settings, flags, runs.value)
