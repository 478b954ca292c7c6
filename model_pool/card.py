"""``ModelCard``: the typed content of ``model.json``, exactly what the registry row stores."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from model_pool.errors import BadInput
from model_pool.limits import check_limit

RELATIONS = (
    "scratch", "finetune", "finetune_top", "finetune_last", "retrain_last", "transfer", "prune", "quantize",
    "adv_train", "distill", "extract", "adapter", "merge", "external", "inferred",
)


@dataclass
class ModelCard:
    """Who a model is: architecture, task, input space, lineage and how it was made."""

    arch: str
    num_classes: int
    input: dict[str, Any]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    relation: str = "scratch"
    parents: list[str] = field(default_factory=list)
    seed: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        return self.parents[0] if self.parents else None

    def to_json(self) -> str:
        d = asdict(self)
        d["parent"] = self.parent
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "ModelCard":
        """Validate untrusted ``model.json`` content field by field; one clear error on the first fault."""
        if not isinstance(d, dict):
            raise BadInput("model.json must hold a JSON object")
        _check(d, "arch", str, required=True)
        _check(d, "num_classes", int, required=True)
        if isinstance(d["num_classes"], bool) or d["num_classes"] < 1:
            raise BadInput("model.json: num_classes must be a positive integer")
        check_limit("num_classes", d["num_classes"], "model.json: num_classes")
        _check(d, "input", dict, required=True)
        if d["input"].get("kind") not in ("image", "text"):
            raise BadInput("model.json: input.kind must be 'image' or 'text'")
        check_limit("input_elements", _input_elements(d["input"]), "model.json: values per input (shape, max_length)")
        for key, typ in [("arch_kwargs", dict), ("task", str), ("relation", str), ("parents", list), ("seed", int),
                         ("recipe", dict), ("metrics", dict), ("sha256", str), ("files", dict)]:
            _check(d, key, typ)
        relation = d.get("relation") or "scratch"
        if not all(r in RELATIONS for r in relation.split("+")):
            raise BadInput(f"model.json: unknown relation {relation!r}")
        if not all(isinstance(p, str) for p in d.get("parents") or []):
            raise BadInput("model.json: parents must be a list of model ids")
        parents = d.get("parents") or ([d["parent"]] if isinstance(d.get("parent"), str) else [])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known and k != "parents" and v is not None}, parents=parents)


def _check(d: dict, key: str, typ: type, required: bool = False) -> None:
    if key not in d or d[key] is None:
        if required:
            raise BadInput(f"model.json: missing field {key!r}")
        return
    if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
        raise BadInput(f"model.json: field {key!r} must be {typ.__name__}, got {type(d[key]).__name__}")


def _input_elements(spec: dict) -> int:
    """Values of one input example: the product of an image's ``shape``, a text's ``max_length`` (0 when absent)."""
    shape, length = spec.get("shape"), spec.get("max_length")
    if isinstance(shape, list) and shape and all(type(s) is int for s in shape):
        return math.prod(shape)
    return length if type(length) is int else 0
