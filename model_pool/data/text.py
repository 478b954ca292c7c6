"""User-side text datasets: AG News, DBPedia, Yelp, Yahoo Answers, Amazon polarity (Hugging Face
hub parquet files) and 20 Newsgroups (scikit-learn). Nothing is downloaded unless ``download=True``.

On-disk layout: ``ROOT/<name>/`` as ``huggingface-cli download <hub id> --repo-type dataset
--local-dir ROOT/<name>`` leaves it (parquet files whose names contain ``train`` / ``test``), and
``ROOT/20newsgroups/20news-bydate-{train,test}/<category>/<doc>`` for 20 Newsgroups.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from model_pool.data import DATASETS
from model_pool.data._root import data_root, missing
from model_pool.data.base import TaskData
from model_pool.data.tokenize import encode, load_tokenizer, train_wordpiece

# name: (hub id, text columns joined with a space, label column, class names)
HF_SPECS = {
    "ag_news": ("fancyzhx/ag_news", ["text"], "label", ["World", "Sports", "Business", "Sci/Tech"]),
    "dbpedia": ("fancyzhx/dbpedia_14", ["title", "content"], "label",
                ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
                 "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork"]),
    "yelp": ("Yelp/yelp_review_full", ["text"], "label", ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]),
    "yahoo_answers": ("community-datasets/yahoo_answers_topics", ["question_title", "question_content", "best_answer"],
                      "topic", ["Society & Culture", "Science & Mathematics", "Health", "Education & Reference",
                                "Computers & Internet", "Sports", "Business & Finance", "Entertainment & Music",
                                "Family & Relationships", "Politics & Government"]),
    "amazon": ("fancyzhx/amazon_polarity", ["title", "content"], "label", ["negative", "positive"]),
}


def _parquet(folder: Path, split: str) -> pd.DataFrame:
    files = sorted(f for f in folder.rglob("*.parquet") if split in f.name)
    if not files:
        raise missing(folder.name, folder / f"**/*{split}*.parquet")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _download_hf(hub_id: str, folder: Path) -> None:
    from datasets import load_dataset as hf_load

    folder.mkdir(parents=True, exist_ok=True)
    for split, ds in hf_load(hub_id).items():
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


def _hf_texts(name: str, root: Path, download: bool):
    hub_id, cols, label, classes = HF_SPECS[name]
    folder = root / name
    if download and not any(folder.rglob("*.parquet")):
        _download_hf(hub_id, folder)
    out = []
    for split in ("train", "test"):
        df = _parquet(folder, split)
        texts = df[cols].fillna("").astype(str).agg(" ".join, axis=1).str.strip().tolist()
        out.append((texts, df[label].to_numpy()))
    return out, classes


def _newsgroups_texts(root: Path, download: bool):
    from sklearn.datasets import fetch_20newsgroups, load_files

    folder = root / "20newsgroups"
    out, classes = [], None
    for split in ("train", "test"):
        tree = folder / f"20news-bydate-{split}"
        if tree.is_dir():
            b = load_files(str(tree), encoding="latin1")
        elif download:
            b = fetch_20newsgroups(data_home=str(folder), subset=split)
        else:
            raise missing("20newsgroups", tree)
        out.append((list(b.data), b.target))
        classes = list(b.target_names)
    return out, classes


def _load(name: str, task=None, root=None, download: bool = False, tokenizer: str | None = None, vocab_size: int = 8000,
          max_length: int = 128, n_train=None, n_test=None, seed: int = 0) -> TaskData:
    if task is not None:
        raise ValueError(f"{name} has no tasks")
    root = data_root(root)
    splits, classes = _newsgroups_texts(root, download) if name == "20newsgroups" else _hf_texts(name, root, download)
    (tr_texts, tr_y), (te_texts, te_y) = splits
    tok = load_tokenizer(tokenizer) if tokenizer else train_wordpiece(tr_texts, vocab_size=vocab_size)
    inp = {"kind": "text", "tokenizer": str(tokenizer) if tokenizer else "wordpiece-trained", "max_length": max_length,
           "vocab_size": tok.get_vocab_size()}
    return TaskData(name, encode(tok, tr_texts, max_length), torch.as_tensor(tr_y, dtype=torch.int64),
                    encode(tok, te_texts, max_length), torch.as_tensor(te_y, dtype=torch.int64), len(classes), inp,
                    list(classes), {"tokenizer": tok, "root": str(root)}).subset(n_train, n_test, seed)


for _name in [*HF_SPECS, "20newsgroups"]:
    DATASETS.register(_name)(lambda task=None, _n=_name, **kw: _load(_n, task, **kw))
