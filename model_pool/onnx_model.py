"""ONNX classifiers (``arch = "onnx"``): run by onnxruntime on the CPU, black-box only (SPEC §11).

An ``.onnx`` file may keep its tensors in external-data files that it names by location. A location must be
a plain relative path inside the model's directory (no absolute path, no ``..``, no symbolic link), checked
with the ``onnx`` package before anything reads the data: :func:`external_data_files`.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from torch import nn

from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, first_line
from model_pool.model_files import ONNX_FILE

INSTALL = "pip install 'mgmp[onnx]'"
DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def require(module: str) -> None:
    """BadInput naming the extra when ``module`` (onnx, onnxruntime) is not installed."""
    if importlib.util.find_spec(module) is None:
        raise BadInput(f"ONNX models need the {module} package: {INSTALL}")


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    """Tensors held by a node's attributes (constants), subgraphs (If, Loop, Scan) included."""
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t
        yield from a.tensors
        for sparse in ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors):
            yield from (sparse.values, sparse.indices)
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            yield from _graph_tensors(g)


def _all_tensors(model: Any) -> Iterator[Any]:
    """Every tensor of the model: initializers and constants of the graph, its subgraphs and its functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _location(onnx_file: Path, tensor: Any) -> str | None:
    """The external-data location of ``tensor``; None for a tensor stored inside the file."""
    entries = {e.key: e.value for e in tensor.external_data}
    if tensor.data_location != 1 and not entries:  # 1 = TensorProto.EXTERNAL
        return None
    if not entries.get("location"):
        raise IntegrityError(f"{onnx_file}: tensor {tensor.name!r} has external data without a location")
    return entries["location"]


def check_location(onnx_file: Path, location: str) -> None:
    """IntegrityError unless ``location`` names a regular file inside ``onnx_file``'s directory, through no link."""
    parts = location.split("/")
    plain = ("\\" not in location and not PurePosixPath(location).is_absolute() and not PureWindowsPath(location).drive
             and all(p and not p.startswith(".") for p in parts))
    if not plain:
        raise IntegrityError(f"{onnx_file}: external data location {location!r} is not a plain relative path "
                             "inside the model's directory")
    root = onnx_file.parent
    if any((root.joinpath(*parts[:i])).is_symlink() for i in range(1, len(parts) + 1)):
        raise IntegrityError(f"{onnx_file}: external data location {location!r} goes through a symbolic link")
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()) or not target.is_file():
        raise IntegrityError(f"{onnx_file}: external data file {location!r} is missing or not a regular file")


def external_data_files(onnx_file: str | Path) -> list[str]:
    """The external-data locations of a valid ONNX model, each checked to stay inside its directory."""
    require("onnx")
    import onnx

    onnx_file = Path(onnx_file)
    try:
        model = onnx.load(str(onnx_file), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's decode errors and the like: not an ONNX file
        raise BadInput(f"{onnx_file}: not a valid ONNX model ({first_line(e, 120)})") from None
    locations = sorted({loc for t in _all_tensors(model) if (loc := _location(onnx_file, t)) is not None})
    for location in locations:
        check_location(onnx_file, location)
    try:
        onnx.checker.check_model(str(onnx_file))  # by path: external data is found beside the file
    except Exception as e:  # noqa: BLE001 - the checker's ValidationError and the like
        raise BadInput(f"{onnx_file}: not a valid ONNX model ({first_line(e, 120)})") from None
    return locations


class OnnxModel(nn.Module):
    """An ONNX classifier run by onnxruntime (CPU): ``forward(x)`` gives float32 logits (N, num_classes). No
    parameters, gradients or features: mgmp's weight- and feature-space methods refuse it (``white_box``)."""

    white_box = False

    def __init__(self, onnx_file: str | Path, num_classes: int, input_kind: str = "image", batch_size: int = 256):
        super().__init__()
        require("onnxruntime")
        import onnxruntime as ort

        self.file, self.num_classes, self.input_kind, self.batch_size = str(onnx_file), num_classes, input_kind, batch_size
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings would break one-line output
        try:
            self.session = ort.InferenceSession(self.file, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise BadInput(f"{self.file}: onnxruntime cannot load it ({first_line(e, 160)})") from None
        self.inputs = self.session.get_inputs()
        self._check_inputs()
        batch = self.inputs[0].shape[0] if self.inputs[0].shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def _check_inputs(self) -> None:
        """One input, or (text) inputs named like a transformers export: input_ids[, attention_mask, token_type_ids]."""
        names = [i.name for i in self.inputs]
        text_ok = self.input_kind == "text" and "input_ids" in names and set(names) <= set(TEXT_INPUTS)
        if len(names) != 1 and not text_ok:
            raise BadInput(f"{self.file}: the model has inputs {names}; mgmp feeds one input "
                           f"(or, for text, {', '.join(TEXT_INPUTS)})")
        unknown = [i.type for i in self.inputs if i.type not in DTYPES]
        if unknown:
            raise BadInput(f"{self.file}: input type {unknown[0]} is not supported (float, integer or bool tensors)")

    def extra_repr(self) -> str:
        return f"file={self.file!r}, num_classes={self.num_classes}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``, ``batch_size`` rows per onnxruntime call (the model's own batch size when fixed)."""
        with torch.no_grad():
            device, x = x.device, x.detach().cpu()
            if len(x) == 0:
                return torch.zeros(0, self.num_classes, device=device)
            size = self.fixed_batch or self.batch_size
            return torch.cat([self._run(chunk) for chunk in x.split(size)]).to(device)

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        n = len(chunk)
        if self.fixed_batch and n < self.fixed_batch:  # pad to the exported batch size, keep the first n rows
            chunk = torch.cat([chunk, chunk.new_zeros((self.fixed_batch - n, *chunk.shape[1:]))])
        try:
            out = self.session.run([self.session.get_outputs()[0].name], self._feeds(chunk))[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise BadInput(f"{self.file}: onnxruntime failed on inputs of shape {list(chunk.shape)} "
                           f"({first_line(e, 160)})") from None
        out = np.asarray(out)[:n]
        if out.shape != (n, self.num_classes):
            raise BadInput(f"{self.file}: outputs of shape {list(out.shape)}, expected [{n}, {self.num_classes}]")
        return torch.from_numpy(out.astype(np.float32, copy=False))

    def _feeds(self, chunk: torch.Tensor) -> dict[str, np.ndarray]:
        """The session's inputs: the batch itself, or token ids with their mask and zero token types."""
        values = {"input_ids": chunk, "attention_mask": chunk != 0, "token_type_ids": torch.zeros_like(chunk)}
        if len(self.inputs) == 1:
            values = {self.inputs[0].name: chunk}
        return {i.name: values[i.name].numpy().astype(DTYPES[i.type]) for i in self.inputs}


def load_onnx_dir(path: str | Path, card: ModelCard) -> OnnxModel:
    """The ONNX model of an mgmp model directory; every external-data file it reads must be recorded in model.json."""
    onnx_file = Path(path) / ONNX_FILE
    unrecorded = [loc for loc in external_data_files(onnx_file) if loc not in card.files]
    if unrecorded:
        raise IntegrityError(f"{onnx_file}: external data file {unrecorded[0]!r} is not recorded in model.json")
    return OnnxModel(onnx_file, card.num_classes, card.input["kind"])
