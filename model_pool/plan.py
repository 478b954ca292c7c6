"""Pool plans: a YAML list of model specs, expanded over grids into jobs that form a DAG.

A spec names ``id`` (a template), ``recipe`` (a relation or ``a+b`` combination), ``parent`` or
``parents``, ``arch``/``arch_kwargs`` (roots, thieves), ``dataset``/``task``/``data`` (loader kwargs),
``seed``, ``params``, ``split`` and ``tags``. ``grid`` maps names to value lists; the cartesian
product is expanded and each value fills ``{name}`` in string fields. A value that is a mapping
sets job fields or params, and ``{name}`` renders its ``name`` entry. A plain grid name that no recipe
reads (``{i}`` of ``m-{i}``) only names jobs. Before anything is expanded, the number of jobs is checked
against ``model_pool.limits`` (``plan_jobs``); each job's params are checked against what its recipe reads.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from model_pool.errors import BadInput
from model_pool.guards import load_yaml
from model_pool.limits import check_limit
from model_pool.registry import check_id

JOB_FIELDS = ("recipe", "parent", "parents", "arch", "arch_kwargs", "dataset", "task", "data", "seed", "split", "tags")
FIELD_TYPES = {"recipe": str, "dataset": str, "arch": str, "arch_kwargs": dict, "task": (str, int), "data": dict,
               "seed": int, "split": str, "tags": dict}


@dataclass
class Job:
    """One model to build."""

    id: str
    recipe: str
    dataset: str
    parents: list[str] = field(default_factory=list)
    task: Any = None
    data: dict[str, Any] = field(default_factory=dict)
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Plan:
    name: str
    jobs: list[Job]

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    def order(self) -> list[str]:
        return list(TopologicalSorter({j.id: j.parents for j in self.jobs}).static_order())


def _render(value: Any, names: dict[str, Any]) -> Any:
    """Fill ``{name}`` templates; a string that is exactly one ``{name}`` keeps the value's type."""
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in names:
            return names[value[1:-1]]
        try:
            return value.format(**names)
        except (KeyError, IndexError, ValueError) as e:
            raise BadInput(f"plan: cannot fill {value!r} ({e!r}); grid names: {', '.join(names) or 'none'}") from None
    if isinstance(value, dict):
        return {k: _render(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, names) for v in value]
    return value


def _check_fields(fields: dict, spec_id: Any) -> None:
    """Types of a job's fields (plans are user input: one clear error, never a crash deeper down)."""
    for key, typ in FIELD_TYPES.items():
        v = fields.get(key)
        if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
            raise BadInput(f"plan: {spec_id!r}: field {key!r} has the wrong type ({type(v).__name__})")
    parents = fields.get("parents")
    if parents is not None and (not isinstance(parents, list) or not all(isinstance(p, str) for p in parents)):
        raise BadInput(f"plan: {spec_id!r}: parents must be a list of model ids")
    if fields.get("parent") is not None and not isinstance(fields["parent"], str):
        raise BadInput(f"plan: {spec_id!r}: parent must be a model id")


def _grid(spec: dict) -> dict[str, list]:
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise BadInput(f"plan: grid of {spec.get('id')!r} must map names to non-empty lists")
    return grid


def _expand(spec: dict, defaults: dict, param_names: set[str]) -> list[tuple[Job, set[str]]]:
    """The jobs of one spec, each with the names of the params it sets itself (not through ``defaults``);
    ``param_names``: what any recipe reads (other plain grid names only name jobs)."""
    if not isinstance(spec.get("id"), str):
        raise BadInput(f"plan: every model needs a string id, got {spec.get('id')!r}")
    if not isinstance(spec.get("params") or {}, dict):
        raise BadInput(f"plan: params of {spec['id']!r} must be a mapping")
    grid = _grid(spec)
    jobs = []
    for combo in itertools.product(*grid.values()) if grid else [()]:
        fields = {k: copy.deepcopy(v) for k, v in spec.items() if k not in ("grid", "params", "id")}
        params = {**copy.deepcopy(defaults), **copy.deepcopy(spec.get("params") or {})}
        own = set(spec.get("params") or {})
        names = {}
        for key, val in zip(grid, combo):
            if isinstance(val, dict):
                names[key] = str(val.get("name", key))
                for k, v in val.items():
                    if k == "name":
                        continue
                    (fields if k in JOB_FIELDS else params)[k] = v
                    if k not in JOB_FIELDS:
                        own.add(k)
            else:
                names[key] = val
                (fields if key in JOB_FIELDS else params)[key] = val
                if key in param_names:
                    own.add(key)
        fields = _render(fields, names)
        _check_fields(fields, spec["id"])
        parents = fields.pop("parents", None) or ([fields.pop("parent")] if fields.get("parent") else [])
        fields.pop("parent", None)
        unknown = set(fields) - set(JOB_FIELDS)
        if unknown:
            raise BadInput(f"plan: unknown field(s) {sorted(unknown)} in {spec.get('id')!r}")
        if "recipe" not in fields or "dataset" not in fields:
            raise BadInput(f"plan: {spec.get('id')!r} needs a recipe and a dataset")
        jobs.append((Job(id=_render(spec["id"], names), parents=list(parents), params=_render(params, names), **fields),
                     own))
    return jobs


def parse_plan(data: Any, name: str = "plan") -> Plan:
    """Expand and validate a plan (job count, ids, recipes and their params, parents, no cycles)."""
    from model_pool.recipes import RECIPES, check_recipe_params  # imports torch: only once a plan is read

    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise BadInput("plan: expected a mapping with a 'models' list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise BadInput("plan: defaults must be a mapping")
    check_recipe_params("plan: defaults", "+".join(RECIPES.names()), defaults, names=defaults)
    specs = [spec if isinstance(spec, dict) else {} for spec in data["models"]]
    n_jobs = sum(math.prod(len(v) for v in _grid(s).values()) for s in specs)  # before building any of them
    check_limit("plan_jobs", n_jobs, "plan: jobs after grid expansion")
    param_names = {k for step in RECIPES.names() for k in RECIPES.get(step).param_types}
    jobs = []
    seen: set[str] = set()
    for j, own in (pair for spec in specs for pair in _expand(spec, defaults, param_names)):
        check_id(j.id)
        if j.id in seen:
            raise BadInput(f"plan: model id {j.id!r} appears twice")
        seen.add(j.id)
        for step in j.recipe.split("+"):
            if step not in RECIPES:
                raise BadInput(f"plan: {j.id}: unknown recipe {step!r}; known: {', '.join(RECIPES.names())}")
        check_recipe_params(f"plan: {j.id} ({j.recipe})", j.recipe, j.params, names=own)
        jobs.append(j)
    for j in jobs:
        missing = [p for p in j.parents if p not in seen]
        if missing:
            raise BadInput(f"plan: {j.id}: parent(s) {missing} not in the plan")
    plan = Plan(str(data.get("name", name)), jobs)
    try:
        plan.order()
    except CycleError as e:
        raise BadInput(f"plan: lineage cycle {e.args[1]}") from None
    return plan


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such plan file")
    return parse_plan(load_yaml(path.read_text(), str(path)), path.stem)
