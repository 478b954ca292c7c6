"""Readers of untrusted files that refuse resource bombs before anything big is allocated (``model_pool.limits``).

``load_json`` / ``load_yaml`` / ``check_depth``: documents nested deeper than ``json_depth`` or expanding (YAML
aliases) to more than ``json_nodes`` values. ``check_safetensors``: a header that lies about the file or declares
more than ``header_bytes`` / ``tensor_bytes``. ``check_model_bytes``: a model whose sizes (classes, widths, depths)
would exceed ``tensor_bytes``, measured on the meta device. Each refusal is one line naming the file.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_pool.errors import BadInput, IntegrityError, TooLarge, first_line
from model_pool.limits import check_limit, limit

if TYPE_CHECKING:
    import torch

# bytes per element of the safetensors dtypes torch reads
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


def _too_deep(what: str) -> TooLarge:
    return TooLarge(f"{what}: nested too deeply to parse (limit {limit('json_depth'):,} levels: json_depth; "
                    "set MGMP_MAX_JSON_DEPTH to raise it)")


def load_json(text: str | bytes, what: str) -> Any:
    """``json.loads`` of untrusted text: BadInput when malformed, TooLarge when nested beyond ``json_depth``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise BadInput(f"{what}: not valid JSON ({getattr(e, 'msg', None) or first_line(e)})") from None
    return check_depth(value, what)


def load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` of untrusted text, refused like ``load_json`` (aliases counted as expanded)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise _too_deep(what) from None
    except yaml.YAMLError as e:
        raise BadInput(f"{what}: invalid YAML ({first_line(e)})") from None
    return check_depth(value, what)


def check_depth(value: Any, what: str) -> Any:
    """``value`` (parsed JSON/YAML) unless nested beyond ``json_depth``, expanding to more than ``json_nodes``
    values, or containing itself (a YAML alias cycle). Iterative and memoised: shared nodes are measured once."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (depth, expanded values) of finished containers
    open_: set[int] = set()  # containers on the current path
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list, tuple)) or (not done and id(node) in sizes):
            continue
        kids = [k for k in (node.values() if isinstance(node, dict) else node) if isinstance(k, (dict, list, tuple))]
        if not done:
            if id(node) in open_:
                raise BadInput(f"{what}: a value contains itself (recursive alias)")
            open_.add(id(node))
            stack += [(node, True)] + [(k, False) for k in kids]
            continue
        open_.discard(id(node))
        depth = 1 + max((sizes[id(k)][0] for k in kids), default=0)
        sizes[id(node)] = (depth, 1 + len(node) - len(kids) + sum(sizes[id(k)][1] for k in kids))
    depth, nodes = sizes.get(id(value), (0, 1))
    check_limit("json_depth", depth, f"{what}: nesting depth")
    check_limit("json_nodes", nodes, f"{what}: values (aliases expanded)")
    return value


def _tensor_bytes(file: Path, name: str, entry: Any, data_size: int) -> int:
    """The bytes one header entry declares, after checking its dtype, shape and offsets against the file."""
    ok = isinstance(entry, dict) and entry.get("dtype") in DTYPE_BYTES
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
    ok = ok and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
    ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
    if not ok:
        raise IntegrityError(f"{file}: header entry {name!r} has no valid dtype, shape and data_offsets")
    nbytes, (begin, end) = DTYPE_BYTES[entry["dtype"]] * math.prod(shape), offsets
    if not 0 <= begin <= end <= data_size or end - begin != nbytes:
        raise IntegrityError(f"{file}: tensor {name!r} declares {entry['dtype']}{shape} ({nbytes:,} bytes) at offsets "
                             f"[{begin}, {end}], which do not fit its size or the file's {data_size:,} data bytes")
    return nbytes


def check_safetensors(file: str | Path) -> None:
    """Read a safetensors header ourselves before safetensors does: its length field and every tensor's offsets
    must fit the file (IntegrityError), and header and declared bytes must be within the limits (TooLarge)."""
    file = Path(file)
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                raise IntegrityError(f"{file}: not a safetensors file (header length {n:,} does not fit its "
                                     f"{size:,} bytes)")
            check_limit("header_bytes", n, f"{file}: safetensors header bytes")
            header = load_json(f.read(n), f"{file}: safetensors header")
    except OSError as e:
        raise IntegrityError(f"{file}: cannot read ({first_line(e)})") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{file}: safetensors header is not a JSON object")
    total = sum(_tensor_bytes(file, k, v, size - 8 - n) for k, v in header.items() if k != "__metadata__")
    check_limit("tensor_bytes", total, f"{file}: declared tensor bytes")


def check_model_bytes(build: Callable[[], Any], what: str) -> None:
    """Build the model on the meta device (no memory) and refuse it when its parameters and buffers would
    exceed ``tensor_bytes``: bounds every size a card feeds into construction (classes, widths, depths)."""
    import torch

    with torch.device("meta"):
        model = build()
    nbytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    check_limit("tensor_bytes", nbytes, f"{what}: parameter bytes")


def read_state_dict(file: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or from a ``.pt``/``.pth`` through ``torch.load(weights_only=True)``:
    tensors only, never unpickled code."""
    import torch  # here, not at the top: reading a plan or a JSON file needs no torch

    if Path(file).suffix == ".safetensors":
        return load_state_dict_safetensors(file)
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warnings would break the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling refusal is bad input
        raise IntegrityError(f"{file}: refused: not a plain state dict of tensors (torch.load weights_only=True "
                             f"failed with {type(e).__name__}; mgmp never unpickles code)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IntegrityError(f"{file}: not a state dict of tensors")
    return state


def load_state_dict_safetensors(file: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, its header checked first (``check_safetensors``: no lying or oversized file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(file)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise IntegrityError(f"{file}: not a valid safetensors file ({first_line(e)})") from None
