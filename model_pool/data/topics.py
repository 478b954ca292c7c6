"""Embedded text data: procedurally generated topic classification, deterministic in the task id.

Twelve topics each own a vocabulary of pseudo-words; a document mixes words of its topic, words of
a distractor topic and common words. Task ``k`` is a 4-way choice among topics (task 0 = topics
0-3, the source task; other tasks draw topics and their label order from a generator seeded by
``k``). All tasks share one word-level tokenizer over the fixed vocabulary, so models transfer and
every process derives the same token ids. ``tokenizer=`` encodes the same documents with a pretrained
model's tokenizer instead (``real:NAME``, a model directory or a tokenizer.json), for pretrained roots.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from model_pool.data import DATASETS
from model_pool.data.base import TaskData
from model_pool.data.tokenize import encode, load_tokenizer, word_level
from model_pool.errors import BadInput
from model_pool.limits import check_limit

N_TOPICS, WORDS_PER_TOPIC, N_COMMON = 12, 30, 120
N_WAY, N_TRAIN, N_TEST, MAX_LENGTH = 4, 800, 240, 48
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pa", "de", "gu", "zo", "be", "fi", "ha", "jo"]


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))


@lru_cache(maxsize=1)
def vocabulary() -> tuple[list[list[str]], list[str]]:
    """Topic word lists and common words (fixed seed, no duplicates across lists)."""
    rng = np.random.default_rng(7)
    seen: set[str] = set()

    def fresh(n):
        out = []
        while len(out) < n:
            w = _word(rng)
            if w not in seen:
                seen.add(w)
                out.append(w)
        return out

    topics = [fresh(WORDS_PER_TOPIC) for _ in range(N_TOPICS)]
    return topics, fresh(N_COMMON)


def _documents(topic_ids: list[int], n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    topics, common = vocabulary()
    labels = rng.integers(len(topic_ids), size=n)
    docs = []
    for lab in labels:
        own, other = topics[topic_ids[lab]], topics[int(rng.integers(N_TOPICS))]
        length = int(rng.integers(12, 40))
        kind = rng.choice(3, size=length, p=[0.25, 0.1, 0.65])
        pools = (own, other, common)
        docs.append(" ".join(pools[k][int(rng.integers(len(pools[k])))] for k in kind))
    return docs, labels


@lru_cache(maxsize=1)
def shared_tokenizer():
    """The shared tokenizer: one id per topic or common word."""
    topics, common = vocabulary()
    return word_level([w for t in topics for w in t] + common)


def task_topics(k: int) -> list[int]:
    """Topics of task ``k``, in label order."""
    if k == 0:
        return list(range(N_WAY))
    return np.random.default_rng(5000 + k).choice(N_TOPICS, size=N_WAY, replace=False).tolist()


@DATASETS.register("synthetic-topics")
def synthetic_topics(task=0, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                     tokenizer: str | None = None, max_length: int | None = None) -> TaskData:
    """Task ``k`` of the procedural topics corpus, as int64 token ids (N, ``max_length``, default 48), encoded
    with the shared word-level tokenizer or the given one (recorded as given, like the user-side text sets)."""
    k = 0 if task is None else int(task)
    length = check_limit("input_elements", MAX_LENGTH if max_length is None else int(max_length),
                         "synthetic-topics: max_length")
    if length < 2:
        raise BadInput(f"synthetic-topics: max_length {length} leaves no room for [CLS] and [SEP]")
    ids = task_topics(k)
    rng = np.random.default_rng(9000 + k)
    tok = load_tokenizer(tokenizer) if tokenizer else shared_tokenizer()
    dtr, ytr = _documents(ids, N_TRAIN, rng)
    dte, yte = _documents(ids, N_TEST, rng)
    inp = {"kind": "text", "tokenizer": str(tokenizer) if tokenizer else "synthetic-topics", "max_length": length,
           "vocab_size": tok.get_vocab_size()}
    return TaskData(
        f"synthetic-topics/{k}", encode(tok, dtr, length), torch.from_numpy(ytr), encode(tok, dte, length),
        torch.from_numpy(yte), N_WAY, inp, [f"topic{t}" for t in ids], {"tokenizer": tok, "topics": ids},
    ).subset(n_train, n_test, seed)
