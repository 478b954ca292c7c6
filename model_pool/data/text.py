"""User-side text datasets: AG News, DBPedia, Yelp, Yahoo Answers, Amazon polarity (Hugging Face hub parquet
files) and 20 Newsgroups (scikit-learn). Nothing is downloaded unless ``download=True``.

On-disk layout under ``root`` (default ``$MGMP_DATA``, else ``~/.cache/mgmp/data``):

- ``<name>/`` as ``huggingface-cli download <hub id> --repo-type dataset --local-dir <root>/<name>`` leaves it:
  parquet files, at any depth, whose names contain ``train`` / ``test``
  (e.g. ``ag_news/data/train-00000-of-00001.parquet``);
- ``20newsgroups/20news-bydate-{train,test}/<category>/<doc>`` (the extracted "bydate" archive), or the
  scikit-learn cache that ``fetch_20newsgroups(data_home=<root>/20newsgroups)`` leaves after a download.

Without ``tokenizer``, a WordPiece tokenizer is trained on the whole train split and cached as
``<root>/<name>/wordpiece-<vocab_size>.json``: WordPiece training is not reproducible across processes, and
every model built on a dataset (parents and children alike) must see the same token ids.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer

from model_pool.data import DATASETS
from model_pool.data._root import data_root, missing
from model_pool.data.base import TaskData
from model_pool.data.tokenize import encode, load_tokenizer, train_wordpiece

SPLITS = ("train", "test")

# name: (hub id, text columns joined with a space, label column, class names in label order)
HF_SPECS = {
    "ag_news": ("fancyzhx/ag_news", ["text"], "label", ["World", "Sports", "Business", "Sci/Tech"]),
    "dbpedia": ("fancyzhx/dbpedia_14", ["title", "content"], "label",
                ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
                 "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork"]),
    "yelp": ("Yelp/yelp_review_full", ["text"], "label", ["1 star", "2 star", "3 stars", "4 stars", "5 stars"]),
    "yahoo_answers": ("community-datasets/yahoo_answers_topics", ["question_title", "question_content", "best_answer"],
                      "topic", ["Society & Culture", "Science & Mathematics", "Health", "Education & Reference",
                                "Computers & Internet", "Sports", "Business & Finance", "Entertainment & Music",
                                "Family & Relationships", "Politics & Government"]),
    "amazon": ("fancyzhx/amazon_polarity", ["title", "content"], "label", ["negative", "positive"]),
}
NEWSGROUPS = "20newsgroups"

Split = tuple[list[str], np.ndarray]  # texts, integer labels


def _split_files(folder: Path, split: str) -> list[Path]:
    """Parquet files of ``split`` anywhere under ``folder``, skipping hidden dirs (``huggingface-cli``'s ``.cache``)."""
    return sorted(f for f in folder.rglob(f"*{split}*.parquet")
                  if not any(p.startswith(".") for p in f.relative_to(folder).parts))


def _read_parquet(files: list[Path], cols: list[str], label: str) -> Split:
    import pandas as pd  # pandas costs half a second to import: only for the files that need it

    """Texts (``cols`` joined with a space) and labels from parquet ``files``."""
    for f in files:
        absent = sorted(set(cols + [label]) - set(pq.read_schema(f).names))
        if absent:
            raise ValueError(f"{f} lacks column(s) {absent}")
    df = pd.concat([pd.read_parquet(f, columns=cols + [label]) for f in files], ignore_index=True)
    text = df[cols[0]].fillna("").astype(str)
    for c in cols[1:]:
        text = text + " " + df[c].fillna("").astype(str)
    return text.str.strip().tolist(), df[label].to_numpy()


def _download_hf(hub_id: str, folder: Path) -> None:
    """Fetch ``hub_id`` with HF ``datasets`` and write each split as ``folder/data/<split>-00000-of-00001.parquet``."""
    try:
        from datasets import load_dataset as hf_load
    except ImportError:
        raise ImportError("downloading Hugging Face datasets needs the `data` extra: "
                          "pip install -e '.[data]'") from None
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in hf_load(hub_id).items():
        out = folder / "data" / f"{split}-00000-of-00001.parquet"
        tmp = out.with_suffix(".parquet.part")  # not matched by the split glob until complete
        ds.to_parquet(str(tmp))
        tmp.rename(out)


def _hf_splits(name: str, folder: Path, download: bool) -> tuple[list[Split], list[str]]:
    """Train and test splits of the hub dataset ``name`` from its parquet files (fetched first if asked and absent)."""
    hub_id, cols, label, classes = HF_SPECS[name]
    if download and not all(_split_files(folder, s) for s in SPLITS):
        _download_hf(hub_id, folder)
    splits = []
    for s in SPLITS:
        files = _split_files(folder, s)
        if not files:
            raise missing(name, folder / f"**/*{s}*.parquet")
        splits.append(_read_parquet(files, cols, label))
    return splits, list(classes)


def _newsgroups_split(folder: Path, split: str, download: bool):
    """One 20 Newsgroups split as a scikit-learn Bunch: the extracted tree if there, else sklearn's cache/download."""
    from sklearn.datasets import fetch_20newsgroups, load_files

    tree = folder / f"20news-bydate-{split}"
    if tree.is_dir():
        return load_files(str(tree), encoding="latin1")
    if not download and not folder.is_dir():  # do not let sklearn create an empty data_home
        raise missing(NEWSGROUPS, tree)
    try:
        return fetch_20newsgroups(data_home=str(folder), subset=split, download_if_missing=download)
    except OSError:  # sklearn: "20Newsgroups dataset not found" (no tree, no cache)
        raise missing(NEWSGROUPS, tree) from None


def _newsgroups_splits(folder: Path, download: bool) -> tuple[list[Split], list[str]]:
    """Train and test splits of 20 Newsgroups; both must list the same categories, or labels would disagree."""
    bunches = [_newsgroups_split(folder, s, download) for s in SPLITS]
    names = [list(b.target_names) for b in bunches]
    if names[0] != names[1]:
        raise ValueError(f"20newsgroups train and test categories differ: {names[0]} vs {names[1]}")
    return [(list(b.data), np.asarray(b.target)) for b in bunches], names[0]


def _tokenizer(folder: Path, tokenizer: str | None, train_texts: list[str], vocab_size: int) -> Tokenizer:
    """The given local tokenizer, else the WordPiece one cached in ``folder`` (trained on ``train_texts`` once)."""
    if tokenizer:
        return load_tokenizer(tokenizer)
    cached = folder / f"wordpiece-{vocab_size}.json"
    if cached.is_file():
        return Tokenizer.from_file(str(cached))
    tok = train_wordpiece(train_texts, vocab_size=vocab_size)
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.part")  # concurrent builders never share a temp file
    try:  # best effort: a read-only data root still works, just without reuse
        tok.save(str(tmp))
        tmp.replace(cached)
    except OSError:
        tmp.unlink(missing_ok=True)
    return tok


def _labels(y: np.ndarray, n: int, name: str) -> torch.Tensor:
    """Labels as int64, checked to lie in [0, n) so a wrong label column fails loudly."""
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
        raise ValueError(f"{name}: labels span [{int(y.min())}, {int(y.max())}], expected [0, {n})")
    return y


def _load(name: str, task=None, root: str | None = None, download: bool = False, tokenizer: str | None = None,
          vocab_size: int = 8000, max_length: int = 128, n_train: int | None = None, n_test: int | None = None,
          seed: int = 0) -> TaskData:
    """Read ``name``, pick the ``n_train``/``n_test`` subset by index, and encode only the texts kept."""
    if task is not None:
        raise ValueError(f"{name} has no tasks")
    folder = data_root(root) / name
    splits, classes = _newsgroups_splits(folder, download) if name == NEWSGROUPS else _hf_splits(name, folder, download)
    (tr_texts, tr_y), (te_texts, te_y) = splits
    ytr, yte = _labels(tr_y, len(classes), name), _labels(te_y, len(classes), name)
    idx = TaskData(name, torch.arange(len(ytr)), ytr, torch.arange(len(yte)), yte, len(classes), {}).subset(
        n_train, n_test, seed)  # the same draw as subsetting encoded tensors, without encoding everything
    tok = _tokenizer(folder, tokenizer, tr_texts, vocab_size)
    xtr = encode(tok, [tr_texts[i] for i in idx.x_train.tolist()], max_length)
    xte = encode(tok, [te_texts[i] for i in idx.x_test.tolist()], max_length)
    inp = {"kind": "text", "tokenizer": str(tokenizer) if tokenizer else "wordpiece-trained", "max_length": max_length,
           "vocab_size": tok.get_vocab_size()}
    meta = {"tokenizer": tok, "root": str(folder), "source": HF_SPECS[name][0] if name in HF_SPECS else "20news-bydate"}
    return TaskData(name, xtr, idx.y_train, xte, idx.y_test, len(classes), inp, list(classes), meta)


@DATASETS.register("ag_news")
def ag_news(task=None, **kw) -> TaskData:
    """AG News (``fancyzhx/ag_news``): 4 news topics. ``kw`` as :func:`_load`."""
    return _load("ag_news", task, **kw)


@DATASETS.register("dbpedia")
def dbpedia(task=None, **kw) -> TaskData:
    """DBPedia-14 (``fancyzhx/dbpedia_14``): 14 entity types, text = title + content. ``kw`` as :func:`_load`."""
    return _load("dbpedia", task, **kw)


@DATASETS.register("yelp")
def yelp(task=None, **kw) -> TaskData:
    """Yelp reviews full (``Yelp/yelp_review_full``): 1-5 stars as labels 0-4. ``kw`` as :func:`_load`."""
    return _load("yelp", task, **kw)


@DATASETS.register("yahoo_answers")
def yahoo_answers(task=None, **kw) -> TaskData:
    """Yahoo Answers topics (``community-datasets/yahoo_answers_topics``): 10 topics, text = title + question +
    best answer. ``kw`` as :func:`_load`."""
    return _load("yahoo_answers", task, **kw)


@DATASETS.register("amazon")
def amazon(task=None, **kw) -> TaskData:
    """Amazon polarity (``fancyzhx/amazon_polarity``): negative/positive, text = title + content. ``kw`` as
    :func:`_load`."""
    return _load("amazon", task, **kw)


@DATASETS.register(NEWSGROUPS)
def twenty_newsgroups(task=None, **kw) -> TaskData:
    """20 Newsgroups "bydate" split (headers kept), 20 categories in sorted name order. ``kw`` as :func:`_load`."""
    return _load(NEWSGROUPS, task, **kw)
