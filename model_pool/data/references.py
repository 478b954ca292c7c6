"""User data given as a file (SPEC §11 "data references"): ``imagefolder:DIR``, ``npz:FILE``, ``csv:FILE``,
``jsonl:FILE``, ``hf-disk:DIR``, loaded as a :class:`TaskData` whose ``name`` is the reference itself.

Every fault is a one-line :class:`BadInput` naming the file. A source without a test split gets a seeded one.
Sizes are checked against ``model_pool.limits`` (rows, bytes) before the data is read.
"""
from __future__ import annotations

import math
import zipfile
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer

from model_pool.data.base import TaskData
from model_pool.data.tokenize import encode, load_tokenizer
from model_pool.errors import BadInput, first_line
from model_pool.guards import load_json
from model_pool.limits import check_limit, limit

if TYPE_CHECKING:
    import pandas as pd

SCHEMES = ("imagefolder", "npz", "csv", "jsonl", "hf-disk")
IMAGE_COLUMNS, LABEL_COLUMNS = ("image", "img"), ("label", "labels")

Arrays = tuple[torch.Tensor, torch.Tensor]  # x, y
Raw = tuple[list[Arrays], list[str], dict[str, Any], dict[str, Any]]  # splits (train[, test]), classes, input, meta


def is_data_ref(name: str) -> bool:
    """Is ``name`` a ``SCHEME:PATH`` data reference (a known scheme) rather than a registered dataset name?"""
    return isinstance(name, str) and name.partition(":")[0] in SCHEMES and ":" in name


def load_data_ref(ref: str, *, shape: list[int] | None = None, mean=None, std=None, tokenizer: str | None = None,
                  max_length: int = 128, split_seed: int = 0, test_fraction: float = 0.2,
                  num_classes: int | None = None, n_train: int | None = None, n_test: int | None = None,
                  task=None, **ignored) -> TaskData:
    """Load the data reference ``ref`` into the model's input space (``shape`` [C,H,W] for images)."""
    scheme, _, where = ref.partition(":")
    if scheme not in SCHEMES:
        raise BadInput(f"{ref}: unknown data reference scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if not where:
        raise BadInput(f"{ref}: no path after '{scheme}:'")
    path = Path(where).expanduser().resolve()
    if not path.exists():
        raise BadInput(f"{path}: no such file or directory (data reference {ref!r})")
    if task is not None:
        raise BadInput(f"{path}: a data reference has no tasks (got task {task!r})")
    if scheme == "imagefolder":
        raw = _imagefolder(path, _shape(path, shape, decoded=True), mean, std)
    elif scheme == "npz":
        raw = _npz(path, None if shape is None else _shape(path, shape), mean, std, tokenizer)
    elif scheme == "hf-disk":
        raw = _hf_disk(path, shape, mean, std, tokenizer, max_length)
    else:
        raw = _table(path, scheme, tokenizer, max_length)
    return _finish(ref, path, raw, num_classes, split_seed, test_fraction).subset(n_train, n_test, split_seed)


def _shape(path: Path, shape, decoded: bool = False) -> list[int]:
    """``shape`` as [C, H, W] positive ints (C 1 or 3 when images are decoded), else BadInput."""
    if shape is None:
        raise BadInput(f"{path}: image data needs the model's input shape (shape=[C, H, W])")
    try:
        dims = [int(d) for d in shape] if isinstance(shape, (list, tuple)) else []
    except (TypeError, ValueError):
        dims = []
    if len(dims) != 3 or min(dims) < 1 or (decoded and dims[0] not in (1, 3)):
        raise BadInput(f"{path}: input shape {shape!r} is not [C, H, W]" + (" with C 1 or 3" if decoded else ""))
    return dims


def _per_channel(path: Path, what: str, value, channels: int, default: float) -> list[float]:
    """``mean``/``std`` as one finite float per channel (a single value is broadcast)."""
    if value is None:
        return [default] * channels
    try:
        vals = [float(v) for v in (value.split(",") if isinstance(value, str) else np.atleast_1d(value).tolist())]
    except (TypeError, ValueError):
        vals = []
    vals = vals * channels if len(vals) == 1 else vals
    if len(vals) != channels or not all(math.isfinite(v) for v in vals) or (what == "std" and min(vals) <= 0):
        raise BadInput(f"{path}: {what} {value!r} does not give one finite value per channel ({channels})"
                       + (", all > 0" if what == "std" else ""))
    return vals


def _image_input(path: Path, shape: list[int], mean, std) -> dict[str, Any]:
    """A complete image input spec."""
    norm = {"mean": _per_channel(path, "mean", mean, shape[0], 0.0), "std": _per_channel(path, "std", std, shape[0], 1.0)}
    return {"kind": "image", "shape": list(shape), "normalization": norm}


def _pixels(img: Image.Image, shape: list[int]) -> torch.Tensor:
    """One PIL image as uint8 (C, H, W): converted to RGB or L, resized to H x W."""
    import torchvision.transforms.functional as TF  # on use: importing torchvision costs over a second

    return TF.pil_to_tensor(TF.resize(img.convert("RGB" if shape[0] == 3 else "L"), shape[1:]))


def _read_image(file: Path, shape: list[int]) -> torch.Tensor | None:
    """An image file as :func:`_pixels`, or None when it cannot be decoded."""
    try:
        with Image.open(file) as img:
            return _pixels(img, shape)
    except (OSError, ValueError, Image.DecompressionBombError):  # UnidentifiedImageError is an OSError
        return None


def _normalise(x: torch.Tensor, inp: dict[str, Any]) -> torch.Tensor:
    """uint8 (N, C, H, W) to float32 in [0, 1], then standardised per channel as ``inp`` records."""
    m, s = (torch.tensor(inp["normalization"][k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    return (x.float() / 255.0 - m) / s


def _image_files(root: Path, classes: list[str], shape: list[int]) -> dict[int, list[Path]]:
    """Each class folder's image files, counted against ``data_rows`` (listing stops just past it) and their
    decoded size against ``data_bytes``, before any image is decoded."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files: dict[int, list[Path]] = {}
    n, cap = 0, limit("data_rows")
    for label, name in enumerate(classes):
        if (root / name).is_dir():
            found = (f for f in (root / name).rglob("*") if f.suffix.lower() in IMG_EXTENSIONS and f.is_file())
            files[label] = sorted(islice(found, cap + 1 - n))
            n += len(files[label])
            check_limit("data_rows", n, f"{root}: image files listed before stopping")
    check_limit("data_bytes", n * math.prod(shape) * 4, f"{root}: decoded image bytes")
    return files


def _folder_split(root: Path, classes: list[str], shape: list[int]) -> Arrays:
    """Decoded images and labels of one ImageFolder tree (unreadable files skipped; an empty class refused)."""
    xs, ys = [], []
    for label, files in _image_files(root, classes, shape).items():
        imgs = [t for t in (_read_image(f, shape) for f in files) if t is not None]
        if not imgs:
            raise BadInput(f"{root / classes[label]}: class folder holds no readable image")
        xs += imgs
        ys += [label] * len(imgs)
    if not xs:
        raise BadInput(f"{root}: holds no class folders (expected {root}/<class>/<image files>)")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def _imagefolder(path: Path, shape: list[int], mean, std) -> Raw:
    """``DIR/<class>/<images>``, or ``DIR/{train,test}/<class>/<images>`` as the two splits."""
    if not path.is_dir():
        raise BadInput(f"{path}: imagefolder needs a directory")
    roots = [path / "train", path / "test"] if (path / "train").is_dir() and (path / "test").is_dir() else [path]
    classes = sorted({d.name for r in roots for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")})
    check_limit("num_classes", len(classes), f"{path}: class folders")
    inp = _image_input(path, shape, mean, std)
    splits = [(_normalise(x, inp), y) for x, y in (_folder_split(r, classes, shape) for r in roots)]
    return splits, classes, inp, {}


def _npz_x(path: Path, key: str, x: np.ndarray, shape: list[int] | None) -> torch.Tensor:
    """``x``/``x_test`` checked: float (N, C, H, W) finite images, or int (N, L) non-negative token ids."""
    if np.issubdtype(x.dtype, np.floating):
        if x.ndim != 4 or (shape is not None and list(x.shape[1:]) != shape):
            raise BadInput(f"{path}: {key} has shape {list(x.shape)}; images must be (N, {', '.join(map(str, shape or 'CHW'))})")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is refused just below
            t = torch.from_numpy(x.astype(np.float32))
        if not torch.isfinite(t).all():
            raise BadInput(f"{path}: {key} holds non-finite values (NaN or inf, or beyond float32)")
        return t
    if np.issubdtype(x.dtype, np.integer) and x.ndim == 2 and shape is None:
        if x.size and x.min() < 0:
            raise BadInput(f"{path}: {key} holds negative token ids")
        return torch.from_numpy(x.astype(np.int64))
    raise BadInput(f"{path}: {key} is {x.dtype} with shape {list(x.shape)}; expected float images (N, C, H, W)"
                   + ("" if shape else " or int token ids (N, L)"))


def _npz_y(path: Path, key: str, y: np.ndarray, n: int) -> torch.Tensor:
    """``y``/``y_test`` checked: int (N,) matching its x."""
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise BadInput(f"{path}: {key} is {y.dtype} with shape {list(y.shape)}; labels must be int (N,)")
    if len(y) != n:
        raise BadInput(f"{path}: {key} has {len(y)} labels for {n} samples")
    return torch.from_numpy(y.astype(np.int64))


def _npy_headers(path: Path) -> list[tuple[str, tuple[int, ...], np.dtype, int]]:
    """(name, shape, dtype, data bytes stored) of each .npy member, read from its header without touching its data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    out = []
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):  # np.load would read such a member whole
                    raise ValueError(f"{info.filename}: not an .npy array")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in readers:
                        raise ValueError(f"{info.filename}: unsupported .npy format version {version}")
                    shape, _, dtype = readers[version](f)
                    out.append((info.filename[:-4], shape, dtype, info.file_size - f.tell()))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BadInput(f"{path}: not a readable .npz archive ({first_line(e)})") from None
    return out


def _check_npy_headers(path: Path) -> None:
    """Refuse arrays beyond ``data_rows`` / ``data_bytes``, or declaring more data than they hold, before
    ``np.load`` allocates them: a header's shape is all it takes to claim 10^8 rows."""
    for key, shape, dtype, stored in _npy_headers(path):
        nbytes = math.prod(shape) * dtype.itemsize
        check_limit("data_rows", shape[0] if shape else 1, f"{path}: {key} rows")
        check_limit("data_bytes", nbytes, f"{path}: {key} bytes")
        if nbytes > stored:
            raise BadInput(f"{path}: {key} declares {list(shape)} {dtype} ({nbytes:,} bytes) but holds {stored:,}")


def _npz(path: Path, shape: list[int] | None, mean, std, tokenizer: str | None) -> Raw:
    """Arrays ``x``, ``y`` (optionally ``x_test``, ``y_test``, ``classes``), already in the model's input space."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise BadInput(f"{path}: not an .npz archive (a zip of .npy arrays, as numpy.savez writes)")
    _check_npy_headers(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BadInput(f"{path}: not a readable .npz archive ({first_line(e)})") from None
    keys = ["x", "y"] + (["x_test", "y_test"] if {"x_test", "y_test"} & set(arrays) else [])
    if absent := [k for k in keys if k not in arrays]:
        raise BadInput(f"{path}: lacks array(s) {absent} (has {sorted(arrays)})")
    splits = [(_npz_x(path, xk, arrays[xk], shape), _npz_y(path, yk, arrays[yk], len(arrays[xk])))
              for xk, yk in zip(keys[::2], keys[1::2])]
    if len(splits) == 2 and (splits[1][0].dtype != splits[0][0].dtype or splits[1][0].shape[1:] != splits[0][0].shape[1:]):
        raise BadInput(f"{path}: x_test {list(splits[1][0].shape)} does not match x {list(splits[0][0].shape)}")
    classes = [str(c) for c in arrays["classes"].tolist()] if "classes" in arrays else []
    x = splits[0][0]
    if x.is_floating_point():
        return splits, classes, _image_input(path, list(x.shape[1:]), mean, std), {}
    tok = _tokenizer(path, tokenizer)
    ids = torch.cat([x.flatten() for x, _ in splits])
    if ids.numel() and int(ids.max()) >= tok.get_vocab_size():
        raise BadInput(f"{path}: token ids reach beyond the tokenizer's vocabulary ({tok.get_vocab_size()})")
    return splits, classes, _text_input(tok, tokenizer, x.shape[1]), {"tokenizer": tok}


def _tokenizer(path: Path, tokenizer: str | None) -> Tokenizer:
    """The model's tokenizer.json, which every text reference needs."""
    if not tokenizer:
        raise BadInput(f"{path}: text data needs a tokenizer (tokenizer=PATH of a tokenizer.json or model directory)")
    return load_tokenizer(tokenizer)


def _text_input(tok: Tokenizer, tokenizer: str, max_length: int) -> dict[str, Any]:
    return {"kind": "text", "tokenizer": str(tokenizer), "max_length": max_length, "vocab_size": tok.get_vocab_size()}


def _labels(path: Path, parts: Sequence[Sequence]) -> tuple[list[torch.Tensor], list[str]]:
    """Labels of each part as int64: integers as they are, strings mapped to their sorted unique names."""
    import pandas as pd  # pandas costs half a second to import: only for the files that need it

    s = pd.Series([v for p in parts for v in p])  # pandas infers int, float (integral ones allowed) or object
    if s.isna().any():
        raise BadInput(f"{path}: {int(s.isna().sum())} row(s) without a label")
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        if (s % 1 != 0).any():
            raise BadInput(f"{path}: labels must be integers or class names, got {s[s % 1 != 0].iloc[0]}")
        y, classes = torch.tensor(s.to_numpy(np.int64)), []
    else:
        classes = sorted(set(s.astype(str)))
        y = torch.tensor(s.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64))
    return list(torch.split(y, [len(p) for p in parts])), classes


def _jsonl(path: Path, max_rows: int) -> pd.DataFrame:
    """JSON-lines rows, each parsed by ``load_json`` (bounded nesting); reading stops after ``max_rows``."""
    import pandas as pd  # pandas costs half a second to import: only for the files that need it

    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                row = load_json(line, f"{path}: line {i}")
                if not isinstance(row, dict):
                    raise BadInput(f"{path}: line {i} is not a JSON object")
                rows.append(row)
                if len(rows) == max_rows:
                    break
    return pd.DataFrame.from_records(rows)


def _table(path: Path, scheme: str, tokenizer: str | None, max_length: int) -> Raw:
    """A CSV or JSON-lines file of ``text`` and ``label`` rows, tokenised with the model's tokenizer; its bytes and
    rows within the limits (reading stops one row past ``data_rows``)."""
    import pandas as pd  # pandas costs half a second to import: only for the files that need it

    check_limit("data_bytes", path.stat().st_size, f"{path}: bytes")
    stop = limit("data_rows") + 1
    try:
        df = (pd.read_csv(path, dtype={"text": str}, keep_default_na=False, na_values={"label": [""]}, nrows=stop)
              if scheme == "csv" else _jsonl(path, stop))
    except BadInput:
        raise
    except (ValueError, OSError) as e:  # pandas' parse errors and undecodable text are ValueErrors
        raise BadInput(f"{path}: not a readable {scheme} file ({first_line(e)})") from None
    check_limit("data_rows", len(df), f"{path}: rows read before stopping")
    check_limit("data_bytes", len(df) * max_length * 8, f"{path}: token id bytes")
    if absent := [c for c in ("text", "label") if c not in df.columns]:
        raise BadInput(f"{path}: lacks column(s) {absent} (has {list(df.columns)})")
    tok = _tokenizer(path, tokenizer)
    (y,), classes = _labels(path, [df["label"].tolist()])
    x = encode(tok, df["text"].fillna("").astype(str).tolist(), max_length)
    return [(x, y)], classes, _text_input(tok, tokenizer, max_length), {"tokenizer": tok}


def _hf_disk(path: Path, shape, mean, std, tokenizer: str | None, max_length: int) -> Raw:
    """``datasets.load_from_disk``: a DatasetDict (train[/test]) or one Dataset; an image or text column, a label."""
    try:
        import datasets
    except ImportError:
        raise BadInput(f"{path}: reading hf-disk data needs the datasets package: pip install datasets") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not a dataset written by save_to_disk ({first_line(e)})") from None
    if isinstance(ds, datasets.DatasetDict) and "train" not in ds:
        raise BadInput(f"{path}: DatasetDict has no 'train' split (has {list(ds)})")
    parts = [ds[s] for s in ("train", "test") if s in ds] if isinstance(ds, datasets.DatasetDict) else [ds]
    cols = parts[0].column_names
    image_col, label_col = (next((c for c in names if c in cols), None) for names in (IMAGE_COLUMNS, LABEL_COLUMNS))
    if label_col is None or (image_col is None and "text" not in cols):
        raise BadInput(f"{path}: needs an image/img or text column and a label/labels column (has {cols})")
    ys, classes = _labels(path, [list(p[label_col]) for p in parts])
    feature = parts[0].features[label_col]
    classes = list(feature.names) if isinstance(feature, datasets.ClassLabel) else classes
    if image_col is not None:
        shape = _shape(path, shape, decoded=True)
        inp, meta = _image_input(path, shape, mean, std), {}
        try:
            xs = [torch.stack([_pixels(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)), shape)
                               for im in p[image_col]]) if len(p) else torch.empty(0, *shape) for p in parts]
        except (OSError, ValueError, TypeError) as e:
            raise BadInput(f"{path}: column {image_col!r} holds an unreadable image ({first_line(e)})") from None
        xs = [_normalise(x, inp) for x in xs]
    else:
        tok = _tokenizer(path, tokenizer)
        inp, meta = _text_input(tok, tokenizer, max_length), {"tokenizer": tok}
        xs = [encode(tok, ["" if t is None else str(t) for t in p["text"]], max_length) for p in parts]
    return list(zip(xs, ys)), classes, inp, meta


def _split(path: Path, data: Arrays, seed: int, fraction: float) -> list[Arrays]:
    """A seeded, deterministic train/test split of one set of samples (disjoint, covering all)."""
    x, y = data
    if not 0 < fraction < 1:
        raise BadInput(f"{path}: test_fraction {fraction} is not in (0, 1)")
    if len(y) < 2:
        raise BadInput(f"{path}: {len(y)} sample(s) cannot be split into train and test")
    n_test = min(len(y) - 1, max(1, round(len(y) * fraction)))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return [(x[perm[n_test:]], y[perm[n_test:]]), (x[perm[:n_test]], y[perm[:n_test]])]


def _finish(ref: str, path: Path, raw: Raw, num_classes: int | None, seed: int, fraction: float) -> TaskData:
    """Check labels and sample counts, split when the source has no test split, and build the TaskData."""
    splits, classes, inp, meta = raw
    if any(len(y) == 0 for _, y in splits):
        raise BadInput(f"{path}: holds no samples" + (" in one of its splits" if len(splits) == 2 else ""))
    y = torch.cat([y for _, y in splits])
    if num_classes is not None and (int(num_classes) < 1 or (classes and len(classes) != int(num_classes))):
        raise BadInput(f"{path}: num_classes {num_classes} does not match its {len(classes)} classes")
    k = int(num_classes) if num_classes is not None else len(classes) or int(y.max()) + 1
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise BadInput(f"{path}: labels span [{int(y.min())}, {int(y.max())}], expected [0, {k})")
    meta = {**meta, "source": str(path), "scheme": ref.partition(":")[0]}
    if len(splits) == 1:
        splits = _split(path, splits[0], seed, fraction)
        meta["split"] = {"seed": seed, "test_fraction": fraction}
    (xtr, ytr), (xte, yte) = splits
    return TaskData(ref, xtr, ytr, xte, yte, k, inp, classes or [str(i) for i in range(k)], meta)


def data_kwargs(input_spec: dict) -> dict[str, Any]:
    """How a data reference is read for a model of this input space (what ``load_data_ref`` needs besides the ref)."""
    norm = input_spec.get("normalization") or {}
    kw = {"shape": input_spec.get("shape"), "mean": norm.get("mean"), "std": norm.get("std"),
          "tokenizer": input_spec.get("tokenizer"), "max_length": input_spec.get("max_length")}
    return {k: v for k, v in kw.items() if v is not None}
