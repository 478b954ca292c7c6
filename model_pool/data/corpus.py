"""Embedded text for causal language models: ``load_dataset("lm-corpus", task="docs", tokenizer=...)``.

Three domains, offline, so that fine-tunes on different data (siblings) exist:

- ``docs``: English paragraphs of the running Python's standard-library docstrings (real technical prose;
  the same on every machine with one Python version);
- ``stories``: short templated narratives (names, places, objects, actions), seeded;
- ``arith``: arithmetic facts in words and digits, seeded.

A task is a next-token problem; its name digests the prompts (caches key on it) and ``meta["label_space"]``
names the tokenizer's vocabulary, the output space every domain shares (the task of the models' cards): ``x`` is a prompt of ``max_length // 2`` to ``max_length`` tokens of one
paragraph (right-padded with 0), ``y`` the token that follows it, and ``num_classes`` the vocabulary size.
Training recipes read ``x`` as language-modelling sequences. Paragraphs are split into train and test
before windows are cut, so no test prompt overlaps a training text.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from model_pool.data import DATASETS
from model_pool.data.base import TaskData
from model_pool.errors import BadInput

DOMAINS = ("docs", "stories", "arith")
MAX_LENGTH, N_TRAIN, N_TEST, TEST_FRACTION = 32, 2000, 400, 0.2
_MODULES = ("abc argparse array ast asyncio base64 bisect calendar cmath collections contextlib copy csv dataclasses "
            "datetime decimal difflib email enum fractions functools gzip hashlib heapq hmac html http.client imaplib "
            "inspect io ipaddress itertools json logging lzma mailbox math mimetypes operator os pathlib pickle pprint "
            "queue random re sched secrets selectors shelve shlex shutil signal smtplib socket sqlite3 statistics "
            "string struct subprocess tarfile tempfile textwrap threading time timeit tokenize trace typing unittest "
            "urllib.parse uuid warnings wave weakref xml.dom.minidom zipfile zlib").split()


def _prose(text: str) -> bool:
    return len(text) > 60 and not text.startswith((">>>", "|", "..")) and sum(c.isalpha() for c in text) > 0.7 * len(text)


@lru_cache(maxsize=1)
def docs() -> tuple[str, ...]:
    """Paragraphs of the standard library's module, class and function docstrings, sorted and unique."""
    out: set[str] = set()
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a stripped-down Python: fewer paragraphs, same procedure
            continue
        objs = [module] + [getattr(module, a) for a in sorted(dir(module)) if not a.startswith("_")]
        for obj in objs:
            own = obj is module or (getattr(obj, "__module__", None) == name
                                    and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)))
            for para in re.split(r"\n\s*\n", (inspect.getdoc(obj) or "") if own else ""):
                para = " ".join(para.split())
                if _prose(para):
                    out.add(para)
    return tuple(sorted(out))


_NAMES = "Ada Ben Cleo Dev Emma Finn Gita Hugo Iris Jon Kira Leo Mia Noor Omar Pia Quinn Rosa Sam Tara".split()
_PLACES = "market library harbour garden station bakery museum forest school river".split()
_THINGS = "apples a map a lantern bread a kite some paint a book tea a compass shoes".split(" ")
_ACTS = ["smiled", "waved", "laughed", "sat down", "asked for help", "looked around", "said hello", "ran home"]


def stories(n: int = 1500, seed: int = 0) -> list[str]:
    """``n`` short seeded narratives of four sentences."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    out = []
    for _ in range(n):
        a, b, place, other = pick(_NAMES), pick(_NAMES), pick(_PLACES), pick(_PLACES)
        out.append(f"{a} went to the {place} to buy {pick(_THINGS)}. At the {place}, {a} met {b}, who {pick(_ACTS)}. "
                   f"Together they walked to the {other} and {pick(_ACTS)}. In the evening {a} {pick(_ACTS)} again.")
    return out


_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
         "seventeen eighteen nineteen twenty".split()


def arith(n: int = 1500, seed: int = 1) -> list[str]:
    """``n`` seeded paragraphs of three arithmetic facts each (sums and products under 100)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        facts = []
        for _ in range(3):
            a, b = (int(v) for v in rng.integers(0, 10, size=2))
            if rng.random() < 0.5:
                facts.append(f"{_WORDS[a].capitalize()} plus {_WORDS[b]} is {a + b}.")
            else:
                facts.append(f"What is {a} times {b}? The answer is {a * b}.")
        out.append(" ".join(facts))
    return out


def domain_texts(domain: str) -> list[str]:
    if domain == "docs":
        return list(docs())
    if domain == "stories":
        return stories()
    if domain == "arith":
        return arith()
    raise BadInput(f"lm-corpus: unknown domain {domain!r}; known: {', '.join(DOMAINS)}")


def file_texts(path: str) -> list[str]:
    """The paragraphs (blank-line separated, whitespace collapsed) of a UTF-8 text file."""
    from model_pool.limits import check_limit

    f = Path(path)
    if not f.is_file():
        raise BadInput(f"{path}: no such text file")
    check_limit("data_bytes", f.stat().st_size, f"{path}: bytes")
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="replace"))]
    return [p for p in paras if p]


def _windows(seqs: list[list[int]], n: int, max_length: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` prompts cut from token sequences at random starts and lengths, with the token that follows each."""
    usable = [s for s in seqs if len(s) > max_length // 2 + 1]
    if not usable:
        raise BadInput(f"lm-corpus: no text is longer than {max_length // 2 + 1} tokens")
    x = torch.zeros(n, max_length, dtype=torch.int64)
    y = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        s = usable[int(rng.integers(len(usable)))]
        length = int(rng.integers(max_length // 2, min(max_length, len(s) - 1) + 1))
        start = int(rng.integers(0, len(s) - length))
        x[i, :length] = torch.tensor(s[start:start + length])
        y[i] = s[start + length]
    return x, y


@DATASETS.register("lm-corpus")
def lm_corpus(task: str | None = None, tokenizer: str | None = None, max_length: int = MAX_LENGTH,
              n_train: int = N_TRAIN, n_test: int = N_TEST, vocab_size: int | None = None, seed: int = 0,
              path: str | None = None) -> TaskData:
    """Next-token prompts of one domain (``task``, default ``docs``), or of the paragraphs of the text file
    ``path``, in ``tokenizer``'s ids (see module doc)."""
    from model_pool.data.tokenize import load_tokenizer

    domain = "file" if path else task or "docs"
    if tokenizer is None:
        raise BadInput("lm-corpus needs the language model's tokenizer (tokenizer=PATH)")
    tok = load_tokenizer(tokenizer)
    vocab = vocab_size or tok.get_vocab_size()
    texts = file_texts(path) if path else domain_texts(domain)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_test_texts = max(1, int(len(texts) * TEST_FRACTION))
    tok.no_padding()
    tok.no_truncation()
    encoded = tok.encode_batch([texts[i] for i in order], add_special_tokens=False)
    seqs = [e.ids[:e.ids.index(0)] if 0 in e.ids else e.ids for e in encoded]  # id 0 is padding: cut there
    if max(max(s, default=0) for s in seqs) >= vocab:
        raise BadInput(f"lm-corpus: the tokenizer yields ids beyond the vocabulary of {vocab}")
    x_test, y_test = _windows(seqs[:n_test_texts], n_test, max_length, rng)
    x_train, y_train = _windows(seqs[n_test_texts:], n_train, max_length, rng)
    spec = {"kind": "text", "tokenizer": str(tokenizer), "max_length": max_length}
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in (x_train, y_train, x_test, y_test))).hexdigest()[:12]
    return TaskData(f"lm-corpus/{domain}/{digest}", x_train, y_train, x_test, y_test, vocab, spec,
                    meta={"domain": domain, "lm": True, "tokenizer": tok, "label_space": vocabulary_task(tok)})


def vocabulary_task(tok) -> str:
    """The output space of every language model with this tokenizer (the task name of its prompts, whatever
    their domain): a digest of the vocabulary."""
    vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    return "tokens-" + hashlib.sha256(repr(vocab).encode()).hexdigest()[:12]
