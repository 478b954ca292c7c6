"""Hugging Face classifier directories (``config.json`` + safetensors), loaded offline through transformers.

``AutoModelForSequenceClassification`` (token ids in, 0 = padding) and ``AutoModelForImageClassification``
(pixel values (N, C, H, W) in) models get mgmp's contract in :class:`HFClassifier`: ``head`` is the last
``nn.Linear`` of the classifier and ``forward_features`` its input, taken by a forward pre-hook.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_pool.archs.external import classifier_module, find_classifier
from model_pool.card import ModelCard
from model_pool.errors import BadInput, IntegrityError, MgmpError, TooLarge, first_line
from model_pool.guards import check_model_bytes, check_safetensors, load_json
from model_pool.hashing import sha256_file
from model_pool.limits import check_limit
from model_pool.quiet import quiet_transformers as _quiet

HF_CONFIG, HF_WEIGHTS, HF_TOKENIZER, HF_PREPROCESSOR = (
    "config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json")
KINDS = {"text": "SequenceClassification", "image": "ImageClassification"}
MAX_TEXT_LENGTH = 128  # token ids per text; longer position tables are not filled (cost, not accuracy)
MAX_JSON_BYTES = 1 << 20


def classifier_name(hf_model: nn.Module, num_labels: int) -> str:
    """The final classifier Linear: ``classifier`` itself, else its last Linear with ``num_labels`` outputs
    (e.g. RoBERTa's ``classifier.out_proj``), else the model's last such Linear (e.g. GPT-2's ``score``)."""
    top = getattr(hf_model, "classifier", None)
    if isinstance(top, nn.Linear):
        return "classifier"
    if isinstance(top, nn.Module):
        inner = [n for n, m in top.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
        if inner:
            return f"classifier.{inner[-1]}"
    return find_classifier(hf_model, num_labels)


class HFClassifier(nn.Module):
    """A transformers classifier with mgmp's contract: ``head`` (its last classifier Linear), ``forward_features``
    (that Linear's input) and ``forward(x) = head(forward_features(x))``."""

    def __init__(self, hf_model: nn.Module, input_kind: str = "text", classifier: str | None = None):
        super().__init__()
        if input_kind not in KINDS:
            raise BadInput(f"input kind {input_kind!r}: a Hugging Face classifier takes text or image")
        name = classifier or classifier_name(hf_model, int(hf_model.config.num_labels))
        head = classifier_module(hf_model, name)
        self.hf, self.head, self.classifier, self.input_kind = hf_model, head, name, input_kind
        self.num_features = head.in_features

    def _run(self, x: torch.Tensor) -> Any:
        """The transformers model's own output on token ids (mask = non-zero ids) or pixel values."""
        if self.input_kind == "text":
            return self.hf(input_ids=x, attention_mask=(x != 0).long())
        return self.hf(pixel_values=x)

    def hf_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits transformers computes (what ``forward`` must reproduce)."""
        return self._run(x).logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        captured = {}
        target = self.hf.get_submodule(self.classifier)
        handle = target.register_forward_pre_hook(lambda m, args: captured.setdefault("z", args[0]))
        try:
            self._run(x)
        finally:
            handle.remove()
        z = captured.get("z")
        if z is None or z.ndim != 2:
            raise BadInput(f"{type(self.hf).__name__}: the input of {self.classifier} is not one feature vector per "
                           "example; this architecture is not supported")
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


HFSequenceClassifier = HFClassifier  # the text-only name of earlier versions


def check_contract(model: HFClassifier, x: torch.Tensor) -> None:
    """BadInput unless ``head(forward_features(x))`` equals the transformers model's own logits on ``x``."""
    with torch.no_grad():
        ours, theirs = model(x), model.hf_logits(x)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
        raise BadInput(f"{type(model.hf).__name__}: its logits are not {model.classifier}(features); "
                       "name the final classifier Linear (--classifier)")


def _read_json(f: Path) -> Any:
    """A small JSON file of the directory, bounded in size and nesting before it is parsed."""
    if f.stat().st_size > MAX_JSON_BYTES:
        raise TooLarge(f"{f}: larger than {MAX_JSON_BYTES:,} bytes")
    return load_json(f.read_bytes(), str(f))


def _check_config(f: Path) -> None:
    """``config.json`` read by us before transformers reads it: size, nesting and label count within the limits."""
    if not f.is_file():
        return  # transformers says what is missing
    d = _read_json(f)
    labels, n = (d.get("id2label"), d.get("num_labels")) if isinstance(d, dict) else (None, None)
    n = max(len(labels) if isinstance(labels, dict) else 0, n if type(n) is int else 0)
    check_limit("num_classes", n, f"{f}: num_labels")


def read_config(path: Path) -> Any:
    """The directory's ``config.json`` as a transformers config (offline, no remote code), checked first."""
    _check_config(path / HF_CONFIG)
    from transformers import AutoConfig

    try:
        with _quiet():
            return AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises on a foreign file is bad input
        raise BadInput(f"{path / HF_CONFIG}: not a usable Hugging Face config ({first_line(e, 160)})") from None


def hf_kind(config: Any) -> str | None:
    """``text`` or ``image`` from the architecture names in ``config.json``; None when they do not say."""
    names = [str(a) for a in getattr(config, "architectures", None) or []]
    kinds = {kind for kind, suffix in KINDS.items() for a in names if suffix in a}
    return kinds.pop() if len(kinds) == 1 else None


def load_hf_classifier(path: Path, kind: str, classifier: str | None = None) -> HFClassifier:
    """The directory's classifier through transformers: offline, safetensors only, float32, every weight present."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    weights = path / HF_WEIGHTS
    if not weights.is_file():
        raise IntegrityError(f"{path}: Hugging Face directory without {HF_WEIGHTS} (pickled .bin files are refused)")
    config = read_config(path)
    check_safetensors(weights)
    auto = AutoModelForSequenceClassification if kind == "text" else AutoModelForImageClassification
    try:
        with _quiet():
            check_model_bytes(lambda: auto.from_config(config), str(path))
            hf, info = auto.from_pretrained(path, local_files_only=True, use_safetensors=True, trust_remote_code=False,
                                            output_loading_info=True)
    except MgmpError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever transformers raises on a foreign file is bad input
        raise BadInput(f"{path}: cannot load as a Hugging Face {KINDS.get(kind, kind)} model ({first_line(e, 160)})") from None
    absent = sorted(map(str, info.get("missing_keys") or [])) + sorted(map(str, info.get("mismatched_keys") or []))
    if absent:
        raise IntegrityError(f"{weights}: no fitting weights for {absent[0]} ({len(absent)} tensors missing or "
                             f"mis-shaped: not a complete {KINDS.get(kind, kind)} checkpoint)")
    return HFClassifier(hf.float().eval(), kind, classifier).eval()


def text_input(path: Path, config: Any, tokenizer: str | None) -> dict[str, Any]:
    """The text input space: ``tokenizer`` (when the directory has one) and a max length within the position table."""
    spec: dict[str, Any] = {"kind": "text"}
    if tokenizer and (path / HF_TOKENIZER).is_file():
        spec["tokenizer"] = tokenizer
    spec["max_length"] = min(int(getattr(config, "max_position_embeddings", None) or MAX_TEXT_LENGTH), MAX_TEXT_LENGTH)
    return spec


def image_shape(config: Any) -> list[int] | None:
    """[C, H, W] from ``num_channels`` and ``image_size`` (an int or [H, W]); None when the config has no size."""
    size, channels = getattr(config, "image_size", None), int(getattr(config, "num_channels", None) or 3)
    if isinstance(size, int) and not isinstance(size, bool):
        return [channels, size, size]
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return [channels, int(size[0]), int(size[1])]
    return None


def preprocessor_normalization(path: Path, channels: int) -> dict[str, list[float]] | None:
    """``image_mean`` / ``image_std`` of the directory's ``preprocessor_config.json``, when it normalises."""
    f = path / HF_PREPROCESSOR
    if not f.is_file():
        return None
    d = _read_json(f)
    if not isinstance(d, dict) or not d.get("do_normalize", True) or "image_mean" not in d:
        return None
    mean, std = d.get("image_mean"), d.get("image_std")
    ok = all(isinstance(v, list) and len(v) == channels and all(isinstance(a, (int, float)) for a in v) for v in (mean, std))
    if not ok or min(std) <= 0:
        raise BadInput(f"{f}: image_mean/image_std must hold {channels} numbers each (std > 0)")
    return {"mean": [float(a) for a in mean], "std": [float(a) for a in std]}


def load_hf_dir(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """Load a plain local HF classifier directory (no model.json): safetensors only, never the network."""
    path = Path(path)
    config = read_config(path)
    kind = hf_kind(config) or "text"
    model = load_hf_classifier(path, kind)
    if kind == "text":
        spec = text_input(path, config, str(path / HF_TOKENIZER))
        spec.setdefault("tokenizer", None)
        spec["max_length"] = int(getattr(config, "max_position_embeddings", 512))
    else:
        shape = image_shape(config)
        if shape is None:
            raise BadInput(f"{path / HF_CONFIG}: no image_size; import it with mgmp model import --input image:C,H,W")
        norm = preprocessor_normalization(path, shape[0]) or {"mean": [0.0] * shape[0], "std": [1.0] * shape[0]}
        spec = {"kind": "image", "shape": shape, "normalization": norm}
    card = ModelCard(arch=f"hf:{config.model_type}", num_classes=int(config.num_labels), relation="external",
                     input=spec, arch_kwargs={"classifier": model.classifier}, sha256=sha256_file(path / HF_WEIGHTS))
    return model, card
