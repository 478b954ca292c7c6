"""Declarative checks of named parameters where they enter: score parameters, a plan's recipe params, index
and query options.

A parameter's type is its annotation (int, float: an int is accepted, bool: never taken for an int, str,
dict, list[...], tuple[...], frozenset[...], ``X | None``); its spec says what else it must be:
``Range(lo, hi)`` (inclusive) or ``Choice(*values)``, applied to each element of a collection.
:func:`check_params` refuses unknown names, wrong types, NaN and ±inf, and values outside the spec in
one line (``BadInput``, which the CLI turns into exit 2): never a silent default or clamp.
"""
from __future__ import annotations

import functools
import inspect
import math
import reprlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Union

from model_pool.errors import BadInput

SEED_MAX = 2**31 - 1  # seeds reach numpy's RandomState (< 2**32) after adding a point index


@dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (None: unbounded); ``open_lo``: ``lo < value`` (rates, temperatures, widths)."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def __call__(self, value) -> bool:
        above = self.lo is None or (value > self.lo if self.open_lo else value >= self.lo)
        return above and (self.hi is None or value <= self.hi)

    def __str__(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.open_lo else '['}{lo}, {hi}]"
        if self.lo is not None:
            return f"{'>' if self.open_lo else '>='} {lo}"
        return f"<= {hi}" if self.hi is not None else "(any finite value)"


class Choice:
    """One of ``values``."""

    def __init__(self, *values):
        self.values = values

    def __call__(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


SEED = Range(0, SEED_MAX)
Spec = Union[Range, Choice]
_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings"), dict: ("a mapping", "mappings"), list: ("a list", "lists"),
          tuple: ("a tuple", "tuples"), frozenset: ("a frozenset", "frozensets"), type(None): ("null", "nulls")}
_COLLECTIONS = (list, tuple, set, frozenset)
_show = reprlib.Repr()
_show.maxstring = _show.maxother = 60


def check_params(owner: str, func: Callable | Mapping[str, Any], values: Mapping[str, Any],
                 specs: Mapping[str, Spec]) -> dict[str, Any]:
    """``values`` (unchanged) when every name is a parameter of ``func`` (or a key of a name -> type mapping)
    whose value has its annotated type and satisfies its spec; else ``BadInput`` naming ``owner``."""
    hints = func if isinstance(func, Mapping) else param_types(func)
    check_names(owner, hints, values)
    for name, value in values.items():
        tp, spec = hints[name], specs.get(name)
        items = value if isinstance(value, _COLLECTIONS) else (value,)
        if not _matches(value, tp) or (spec is not None and value is not None and not all(spec(v) for v in items)):
            raise BadInput(f"{owner}: parameter {name} must be {_requirement(tp, spec)}, got {_show.repr(value)}")
    return dict(values)


def check_names(owner: str, known: Iterable[str], names: Iterable[Any]) -> None:
    """``BadInput`` for the first name not in ``known``, listing the known ones."""
    known = list(known)
    for name in names:
        if name not in known:
            listed = f"known: {', '.join(sorted(known))}" if known else "it takes none"
            raise BadInput(f"{owner}: unknown parameter {_show.repr(name)}; {listed}")


@functools.cache
def param_types(func: Callable) -> dict[str, Any]:
    """Name -> annotation (``Any`` where none) of the keyword parameters of ``func`` (a class: of its constructor)."""
    hints = typing.get_type_hints(func.__init__ if inspect.isclass(func) else func)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(func).parameters.items()
    return {n: hints.get(n, Any) for n, p in params if n != "self" and p.kind in kinds}


def _matches(value, tp) -> bool:
    """Is ``value`` of the annotated type ``tp`` (numbers finite, bool never an int)?"""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or math.isfinite(value))
    if origin in _COLLECTIONS:
        return isinstance(value, origin) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _requirement(tp, spec: Spec | None) -> str:
    """What a value of type ``tp`` must be: "an integer >= 1", "one of a, b", "a list of numbers, each >= 0"."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    nullable = type(None) in args
    core = [a for a in args if a is not type(None)]
    collection = any(typing.get_origin(a) in _COLLECTIONS for a in core)
    text = " or ".join(_noun(a) for a in core)
    if isinstance(spec, Choice) and not collection:
        text = str(spec)
    elif spec is not None:
        text += f", each {spec}" if collection else f" {spec}"
    return text + (" or null" if nullable else "")


def _noun(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _COLLECTIONS or origin is dict:
        noun = _NOUNS.get(origin, (origin.__name__,))[0]
        return f"{noun} of {_NOUNS.get(args[0], ('', args[0].__name__))[1]}" if args and origin is not dict else noun
    return _NOUNS.get(tp, (getattr(tp, "__name__", str(tp)),))[0]


def _num(x: float | None) -> str:
    return str(int(x)) if isinstance(x, (int, float)) and float(x).is_integer() and abs(x) < 1e15 else repr(x)
