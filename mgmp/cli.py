"""The ``mgmp`` command: one parser, one library call per command, one-line errors.

Handlers are named ``module:function`` and imported only when their command runs, so ``mgmp pool ls``
does not pay for torch-heavy stages it never touches; choices that registries know (score methods,
DNA kinds, index kinds) are read from the registries when argparse first needs them.
Errors: the project's ``MgmpError`` gives one line on stderr and its ``exit_code`` (2: bad input), as does
an ``OSError`` (the environment refused a read or write: disk full, read-only directory); anything else is a bug: exit 1 and a pointer to ``--debug``, which shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Iterable

from mgmp._jsonio import write_json
from mgmp.commands import Outcome
from model_pool.errors import MgmpError, first_line

LIGHTNING = ("fit", "validate", "test", "predict")


class RegistryChoices:
    """argparse ``choices`` read from a registry on first use (membership, listing in help and errors)."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self._names, self._cache = names, None

    def _all(self) -> list[str]:
        if self._cache is None:
            self._cache = list(self._names())
        return self._cache

    def __contains__(self, item) -> bool:
        return item in self._all()

    def __iter__(self):
        return iter(self._all())


# the registered score methods, known without importing them (they import torch); a test keeps it equal to the
# registry (mgmp.scores.list_scores)
SCORE_METHODS = ("basin", "cae", "closeness", "dataset_inference", "dna", "generated", "inheritance", "ipguard",
                 "lm_cka", "lm_inheritance", "lm_invariant", "lm_logprob", "lm_tokens", "modeldiff", "sac", "weights",
                 "zest")


def _score_names(with_fused: bool) -> RegistryChoices:
    return RegistryChoices(lambda: list(SCORE_METHODS) + (["fused"] if with_fused else []))


def _index_kinds() -> RegistryChoices:
    def names():
        from mgmp.index.factory import KINDS

        return KINDS

    return RegistryChoices(names)


def _dna_kinds(value: str) -> tuple[str, ...]:
    from mgmp.index.vectors import DNA_KINDS

    kinds = tuple(v.strip() for v in value.split(",") if v.strip())
    if not kinds or any(k not in DNA_KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"{value!r}: DNA kinds are a comma-separated subset of {', '.join(DNA_KINDS)}")
    return kinds


def _executor_args(sp: argparse.ArgumentParser, what: str) -> None:
    """``--executor`` and ``--address`` of the commands that fan work out (pool build, score-matrix)."""
    sp.add_argument("--executor", choices=["local", "ray"], default="local",
                    help=f"where {what} run: local processes (--workers) or Ray tasks (needs the distributed extra)")
    sp.add_argument("--address", help="Ray cluster address for --executor ray (e.g. auto or HOST:6379); "
                                      "default: start a local Ray instance with --workers CPUs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mgmp", description="Learned model provenance: who derived which model from whom.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(parent, name: str, handler: str, help_: str) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", metavar="PATH", help="also write the result as JSON")
        sp.set_defaults(handler=handler)
        return sp

    d = cmd(sub, "demo", "mgmp.commands.demo:run", "run the main job on the embedded default")
    d.add_argument("--out", default="runs/demo", help="output directory (pools and report)")
    d.add_argument("--logger", choices=["wandb", "csv", "none"], default="wandb")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--epochs", type=int, default=10, help="MGMP training epochs")
    d.add_argument("--seed", type=int, default=0,
                   help="seed of the demo's random draws: MGMP's initialisation and training episodes, the "
                        "points the pair scores sample, the t-SNE (the pool plan keeps its models' own seeds)")

    pool = sub.add_parser("pool", help="build, list and extend model pools").add_subparsers(dest="pool_command", required=True)
    b = cmd(pool, "build", "mgmp.commands.pool:build", "build a pool from a YAML plan")
    b.add_argument("config")
    b.add_argument("--out", required=True)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--resume", action="store_true", help="finish an interrupted build")
    b.add_argument("--dry-run", action="store_true", help="expand and print the plan without training")
    _executor_args(b, "jobs")
    ls = cmd(pool, "ls", "mgmp.commands.pool:ls", "list a pool's models")
    ls.add_argument("dir")
    ls.add_argument("--tree", action="store_true", help="print the lineage forest")
    v = cmd(pool, "verify", "mgmp.commands.pool:verify",
            "check a pool's files, registry rows, caches and indexes (exit 1 on findings)")
    v.add_argument("dir")
    r = cmd(pool, "repair", "mgmp.commands.pool:repair",
            "rebuild a damaged pool.sqlite from the model directories (the damaged file is kept)")
    r.add_argument("dir")
    r.add_argument("--force", action="store_true", help="rebuild even when the registry looks healthy")
    bk = cmd(pool, "backup", "mgmp.commands.pool:backup", "copy a pool's registry (SQLite online backup) to OUT")
    bk.add_argument("dir")
    bk.add_argument("out")
    rm = cmd(pool, "rm", "mgmp.commands.pool:rm",
             "remove models: their rows (edges, scores, DNA), cached outputs, index ids and directories")
    rm.add_argument("dir")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.add_argument("--with-descendants", action="store_true",
                    help="also remove every model descending from them (default: refuse to orphan any)")
    a = cmd(pool, "add", "mgmp.commands.pool:add", "register a model (mgmp dir, HF dir, or .pt with --arch)")
    a.add_argument("dir")
    a.add_argument("model")
    a.add_argument("--id")
    a.add_argument("--parent", action="append", help="parent model id (repeat for merges)")
    a.add_argument("--relation")
    a.add_argument("--arch", help="architecture of a .pt state dict")
    a.add_argument("--arch-kwargs", help="JSON kwargs of --arch, e.g. '{\"width\": 8}'")
    a.add_argument("--num-classes", type=int)
    a.add_argument("--input", help='input spec JSON for a .pt, e.g. \'{"kind": "image", "shape": [1, 8, 8]}\'')
    a.add_argument("--public", action="store_true", help="a public backbone (others fine-tune it: backbone verdicts)")
    a.add_argument("--alias", action="append", help="another name of the model, e.g. its hub id (repeatable)")

    model = sub.add_parser("model", help="bring models built elsewhere into mgmp").add_subparsers(dest="model_command",
                                                                                               required=True)
    mi = cmd(model, "import", "mgmp.commands.model:import_",
             "write a model built elsewhere (torchvision, timm, mgmp, Hugging Face, ONNX, a PEFT LoRA adapter) as "
             "an mgmp model directory")
    mi.add_argument("src", help="weights (.safetensors, or a .pt/.pth state dict read with weights_only=True), "
                                "a local Hugging Face directory, an .onnx file, or a PEFT adapter directory")
    mi.add_argument("--from", dest="source", required=True, metavar="FAMILY[:ARCH]",
                    help="torchvision:NAME, timm:NAME (timm extra), mgmp:ARCH, hf (classifiers and causal LMs), "
                         "gguf (a causal LM's .gguf file, dequantised), onnx (black box, onnx extra), or peft (a "
                         "LoRA adapter directory of a causal LM, merged into --base)")
    mi.add_argument("--num-classes", type=int, help="number of classes (hf: read from config.json)")
    mi.add_argument("--input", help="image:C,H,W (e.g. image:3,32,32) or text (hf: read from the config)")
    mi.add_argument("--normalize", metavar="MEAN/STD", help="per-channel input normalisation, e.g. 0.5,0.5,0.5/0.2,0.2,0.2")
    mi.add_argument("--data", help="the model's data: a dataset name or reference (npz:FILE, imagefolder:DIR, ...); for a "
                                   "causal LM, its prompts: lm-corpus[:DOMAIN] (default lm-corpus:docs; --from peft: "
                                   "the base's) or a text file")
    mi.add_argument("--classifier", help="the final classifier module (default: the last nn.Linear with --num-classes "
                                         "outputs); its input is the model's features")
    mi.add_argument("--task", help="a name for the label space (models with one task name share their classes)")
    mi.add_argument("--base", metavar="DIR", help="--from peft: the mgmp causal_lm model directory the LoRA adapter "
                                                  "applies to (imported with --from hf or gguf); its sha256 is checked")
    mi.add_argument("--out", required=True, help="the model directory to write")

    sv = cmd(sub, "serve", "mgmp.commands.serve:run", "expose a model as an HTTP JSON endpoint (for endpoint: suspects)")
    sv.add_argument("model", help="model directory or POOL_DIR::MODEL_ID")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--labels-only", action="store_true", help="answer labels only (the strictest black box)")
    sv.add_argument("--output", choices=["logits", "probs"], default="logits",
                    help="what the endpoint answers besides labels: logits (every black-box score then equals the "
                         "local one) or probabilities (SAC then correlates log-probabilities, not logits)")

    pv = cmd(sub, "provenance", "mgmp.commands.provenance:run",
             "probability that SUSPECT was derived from SOURCE (trained MGMP checkpoint)")
    pv.add_argument("source", help="model directory or POOL_DIR::MODEL_ID")
    pv.add_argument("suspect", help="model directory or POOL_DIR::MODEL_ID")
    pv.add_argument("--ckpt", required=True, help="checkpoint written by `mgmp fit`")
    pv.add_argument("--points", type=int, default=200, help="number of source test inputs (fragments)")
    pv.add_argument("--data", help="dataset of the source's inputs, when its model.json records none")
    pv.add_argument("--task")

    scn = cmd(sub, "scan", "mgmp.commands.scan:run",
              "which public base model MODEL is built on: its weights against the catalog's fingerprints (shipped, "
              "private, --catalog), a verdict per base, and the model card's base_model claim checked")
    scn.add_argument("model", help="mgmp model directory, Hugging Face directory, .safetensors/.pt/.pth/.bin state "
                                   "dict, or real:NAME")
    scn.add_argument("--catalog", action="append", metavar="DIR", help="also this catalog directory (repeatable)")
    scn.add_argument("--no-shipped", action="store_true", help="leave the catalog shipped with mgmp out")
    scn.add_argument("--top-k", type=int, default=5, help="candidates shown")
    catalog = sub.add_parser("catalog", help="the base models `mgmp scan` knows").add_subparsers(
        dest="catalog_command", required=True)
    ca = cmd(catalog, "add", "mgmp.commands.scan:add", "fingerprint MODEL into a catalog of one's own")
    ca.add_argument("model", help="as `mgmp scan` reads it")
    ca.add_argument("--name", required=True, help="the base's name in the catalog")
    ca.add_argument("--catalog", metavar="DIR", help="default: the private catalog ($MGMP_CATALOG, ~/.mgmp/catalog)")
    ca.add_argument("--what", help="a line describing the base")
    ca.add_argument("--alias", action="append", help="another name of the base, e.g. its hub id (repeatable): "
                                                     "model cards' base_model claims are matched to these")
    cl = cmd(catalog, "ls", "mgmp.commands.scan:ls", "list a catalog's bases (default: shipped and private)")
    cl.add_argument("--catalog", metavar="DIR", help="only this catalog directory")

    sc = cmd(sub, "score", "mgmp.commands.score_files:run",
             "one pair score (any registered method), or all of them fused")
    sc.add_argument("method", choices=_score_names(with_fused=True), metavar="METHOD",
                    help="a registered score method, or fused (the verdict: a test at level --alpha over the scores "
                         "against the source's null, with the shipped calibration or --calibration POOL's)")
    sc.add_argument("source", help="model directory or POOL_DIR::MODEL_ID (white-box)")
    sc.add_argument("suspect", help="model directory or POOL_DIR::MODEL_ID (queried only, except weight-space methods)")
    sc.add_argument("--data", help="the source's dataset, when its model.json records none")
    sc.add_argument("--task")
    sc.add_argument("--suspect-data", help="the suspect's dataset (indirect measurement of another task)")
    sc.add_argument("--suspect-task")
    sc.add_argument("--base", metavar="MODEL", help="the public backbone both may descend from (read by inheritance)")
    sc.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter, e.g. k=50 (repeat)")
    sc.add_argument("--threshold", type=float, help="decision threshold (default: the pool's, from mgmp calibrate)")
    sc.add_argument("--calibration", metavar="POOL", help="a calibrated pool whose thresholds and fused test apply "
                                                          "(default: the source's pool when calibrated, else the "
                                                          "calibration shipped with mgmp)")
    sc.add_argument("--no-cache", action="store_true", help="recompute even when the registry has the score")
    sc.add_argument("--max-queries", type=int, help="stop when the method would ask the suspect about more inputs")
    sc.add_argument("--timeout", type=float, default=30.0, help="seconds an endpoint: suspect may take per request")
    sc.add_argument("--references", type=int, metavar="K",
                    help="independent references of the source (its architecture, data and recipe, other seeds) "
                         "that give each score's null, trained once per source and cached (default: fused 4; a "
                         "single score reads the null when cached; 0: no null)")
    sc.add_argument("--alpha", type=float, default=0.01,
                    help="fused: the test's level, the rate at which an independent model is called derived")

    sm = cmd(sub, "score-matrix", "mgmp.commands.score_matrix:run",
             "all-pairs scores of a pool's models, in parallel, cached in its registry")
    sm.add_argument("dir", help="pool directory")
    sm.add_argument("--method", required=True, choices=_score_names(with_fused=False), metavar="METHOD")
    sm.add_argument("--sources", help="comma-separated source model ids (default: every model)")
    sm.add_argument("--suspects", help="comma-separated suspect model ids (default: every model)")
    sm.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter, e.g. n_points=50 (repeat)")
    sm.add_argument("--workers", type=int, default=1)
    _executor_args(sm, "pair scores")

    cal = cmd(sub, "calibrate", "mgmp.commands.calibrate:run",
              "fit the pool's score thresholds, fused models and query calibration on its calibration pairs")
    cal.add_argument("dir", nargs="?", help="pool directory")
    cal.add_argument("--methods", help="comma-separated subset of the calibrated score columns")
    cal.add_argument("--references", type=int, default=4, metavar="K",
                     help="independent references per source for the fused test's nulls")
    cal.add_argument("--no-test", action="store_true", help="skip the pool's own fused test (it trains references)")
    cal.add_argument("--domains", metavar="P1,P2,...",
                     help="fit the fused test on every pair of these pools pooled and write it to --out (default: the "
                          "calibration shipped in the package)")
    cal.add_argument("--out", help="with --domains: where the fused test's JSON goes")
    cal.add_argument("--combiner", default="logistic",
                     help="with --domains: the learned combination of the normalised scores, logistic or mgmp-head "
                          "(the MGMP classifier's head f_p; `mgmp bench transfer --combiners` compares them)")
    cal.add_argument("--no-query", action="store_true", help="skip the query calibration (it builds a held-out index)")
    cal.add_argument("--param", action="append", metavar="COLUMN.KEY=VALUE",
                     help="a score column's parameter, as in `bench lineage --param` (its thresholds then apply to "
                          "scores with the same parameters only)")
    cal.add_argument("--seed", type=int, default=0)

    index = sub.add_parser("index", help="the pool's FAISS index of model DNA").add_subparsers(dest="index_command", required=True)
    ib = cmd(index, "build", "mgmp.commands.index:build", "compute missing DNA vectors and build or extend the index")
    ib.add_argument("dir")
    ib.add_argument("--kind", choices=_index_kinds(), default="flat")
    ib.add_argument("--dna", type=_dna_kinds, default="gram,weights",
                    help="comma-separated DNA kinds, one index each: gram (representations), weights (inherited "
                         "weights), mgmp (needs --ckpt)")
    ib.add_argument("--ckpt", help="MGMP checkpoint for --dna mgmp")
    ib.add_argument("--threads", type=int, help="FAISS threads")
    ib.add_argument("--rebuild", action="store_true", help="rebuild instead of extending")
    q = cmd(sub, "query", "mgmp.commands.index:query", "which registered models are SUSPECT's ancestors")
    q.add_argument("dir")
    q.add_argument("suspect", help="model directory or POOL_DIR::MODEL_ID")
    q.add_argument("--top-k", type=int, default=5)
    q.add_argument("--kind", choices=_index_kinds(), default="flat")
    q.add_argument("--dna", type=_dna_kinds, default="gram,weights",
                   help="DNA indexes giving candidates (the first must exist; others are used where built)")
    q.add_argument("--ckpt", help="MGMP checkpoint for --dna mgmp")
    q.add_argument("--no-rerank", action="store_true", help="DNA similarity only")
    q.add_argument("--support", choices=("verdict", "fused", "similarity"), default="verdict",
                   help="what supports a hit: the fused verdict at --alpha (each hit against its own references), the "
                        "pool's fast fused model (after `mgmp calibrate`), or DNA similarity")
    q.add_argument("--alpha", type=float, default=0.01, help="the verdict's level per suspect: the probability that a suspect with no ancestor in the "
                        "registry is given one (Bonferroni over the candidates tested)")
    q.add_argument("--references", type=int, default=4, help="the verdict's independent references per hit")
    q.add_argument("--min-similarity", type=float, default=0.99, help="support threshold of --support similarity")
    q.add_argument("--prefer-ancestors", type=float,
                   help="closeness tolerance within which a registered ancestor of a hit is preferred "
                        "(default: the pool's calibrated value, else 0.1)")
    q.add_argument("--support-threshold", type=float,
                   help="support threshold on the hits' evidence (default: the pool's calibrated value)")
    q.add_argument("--suspect-data", help="the suspect's dataset (when its model.json records none)")
    q.add_argument("--suspect-task")
    q.add_argument("--student-roots", type=int, default=16,
                   help="without a supported ancestor, this many registry roots (nearest first) are checked with the "
                        "pool's student scores (when calibrated with them; 0: never)")
    q.add_argument("--parent", choices=("rank", "edges"), default="rank",
                   help="rank: the first ranked supported hit; edges: the supported hit with the highest P(parent) "
                        "under the pool's edge model (kept by `mgmp forest`)")

    fo = cmd(sub, "forest", "mgmp.commands.forest:run", "recover the directed lineage forest of a set of models")
    fo.add_argument("dir", help="a pool (its registered edges are ignored) or a directory of model directories")
    fo.add_argument("--models", help="comma-separated model ids (default: every model, or those of --split)")
    fo.add_argument("--split", help="only the pool's models of this split (e.g. eval)")
    fo.add_argument("--method", choices=("fused", "mother"), default="fused",
                    help="fused: an edge model learned on calibration families; mother: MoTHer's weights-only rule")
    fo.add_argument("--top-k", type=int, default=5, help="candidate neighbours per model and DNA kind")
    fo.add_argument("--calibration", metavar="POOL", help="a calibrated pool whose fused model gives relatedness")
    fo.add_argument("--figure", metavar="PNG", help="draw the recovered forest (next to the true one when known)")
    fo.add_argument("--write-pool", metavar="OUT", help="register the models in a new pool with the recovered edges")

    bench = sub.add_parser("bench", help="benchmarks written to docs/results.md").add_subparsers(dest="bench", required=True)
    bm = cmd(bench, "mgmp", "mgmp.commands.bench:mgmp", "Table-1-style MGMP results with controls and baselines")
    bm.add_argument("--pool", help="pool directory (default runs/pools/digits, digits_lineage for --holdout family, "
                                   "or topics; built if absent)")
    bm.add_argument("--domain", choices=["image", "text"], default="image")
    bm.add_argument("--seeds", type=int, default=3)
    bm.add_argument("--epochs", type=int, default=20)
    bm.add_argument("--episodes", type=int, default=100, help="episodes (batches) per epoch")
    bm.add_argument("--eval-points", type=int, default=200)
    bm.add_argument("--variants", help="comma-separated subset of the table's rows")
    bm.add_argument("--holdout", choices=["split", "family"], default="split",
                    help="split: held-out tasks of one source; family: the source's whole family held out")
    bm.add_argument("--source", default="source", help="source model id (family: the held-out family's root)")
    bm.add_argument("--generator", help="the DNA generator's architecture (default: the domain's embedded one)")
    bm.add_argument("--generator-kwarg", action="append", metavar="KEY=VALUE", dest="generator_kwargs",
                    help="an argument of the generator (repeatable; replaces the domain's defaults), e.g. "
                         "pretrained=real:minilm-l6")
    bm.add_argument("--workers", type=int, default=2)
    bm.add_argument("--build", action="store_true", help="resume the pool build even when the pool exists")
    bl = cmd(bench, "lineage", "mgmp.commands.bench:lineage", "Table-2-style determination accuracy per relation and method")
    bl.add_argument("--pool", default="runs/pools/digits_lineage", help="lineage pool (built from digits_lineage.yaml if absent)")
    bl.add_argument("--methods", help="comma-separated subset of the score columns")
    bl.add_argument("--no-mgmp", action="store_true", help="skip the MGMP column (and its share of the fused model)")
    bl.add_argument("--mgmp-epochs", type=int, default=10)
    bl.add_argument("--seed", type=int, default=0)
    bl.add_argument("--figures", default="docs/img", help="where the closeness heatmap is written")
    bl.add_argument("--workers", type=int, default=2)
    bl.add_argument("--build", action="store_true", help="resume the pool build even when the pool exists")
    bl.add_argument("--sources", help="comma-separated: only the pairs of these sources (default: every source)")
    bl.add_argument("--calibration-from", metavar="POOL",
                    help="also report the evaluation split under POOL's stored calibration, applied unchanged")
    bl.add_argument("--param", action="append", metavar="COLUMN.KEY=VALUE",
                    help="a score column's parameter, e.g. zest.n_points=32 (repeatable; reduced settings for large models)")
    blm = cmd(bench, "lm", "mgmp.commands.bench:lm", "the language-model scores of one source against every other "
              "model of an LM pool, each read against the source's null, per relation")
    blm.add_argument("--pool", default="runs/pools/real_llm", help="a pool of causal LMs (configs/pool/real_llm.yaml)")
    blm.add_argument("--source", default="smol-a", help="the source's model id")
    blm.add_argument("--references", type=int, default=4, help="models made like the source in its null (fine-tunes "
                     "of its public base, else small LMs from scratch)")
    blm.add_argument("--alpha", type=float, default=0.01, help="level of each test")
    bs = cmd(bench, "speed", "mgmp.commands.bench:speed", "seconds per pair of every score, batched vs per-sample "
             "(and vs lime); --floor: per-source and per-suspect work against the forward-pass floor")
    bs.add_argument("--pool", default="runs/pools/digits_lineage")
    bs.add_argument("--source", default="src-a", help="model id (or, with --floor, any model reference)")
    bs.add_argument("--suspects", default="src-a-ft-heavy,ind-small_cnn-s40", help="comma-separated model ids")
    bs.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is kept)")
    bs.add_argument("--lime-points", type=int, default=16, help="points of the Zest-vs-lime comparison")
    bs.add_argument("--lime-masks", type=int, default=1000)
    bs.add_argument("--floor", action="store_true", help="the first suspect pays the per-source work, the later ones "
                    "are timed against the forward-pass floor (the table of `mgmp bench reuse`)")
    br = cmd(bench, "reuse", "mgmp.commands.bench:reuse",
             "per-source work reused: the first suspect of a source against the later ones and the forward-pass floor")
    br.add_argument("--source", required=True, help="model directory or POOL_DIR::MODEL_ID")
    br.add_argument("--suspects", required=True, help="comma-separated model references (two or more)")
    for b in (bs, br):
        b.add_argument("--data", help="the source's data, when its model.json records none")
        b.add_argument("--methods", help="comma-separated subset of closeness,zest,ipguard,modeldiff,sac,dna,basin,weights")
        b.add_argument("--param", action="append", metavar="METHOD.KEY=VALUE", help="a method's parameter (repeat)")
        b.add_argument("--floor-seconds", type=float, default=1.0, help="seconds per batch size of the throughput probe")
    bsc = cmd(bench, "scan", "mgmp.commands.bench:scan",
              "every model of the real pools scanned against the shipped catalog: top-1 base, none for the rest")
    bsc.add_argument("--pools", default="runs/pools/real_image,runs/pools/real_text", help="comma-separated pool dirs")
    bsc.add_argument("--plans", help="comma-separated plan files giving each pool's pretrained starts (default: "
                                     "configs/pool/<pool dir name>.yaml where it exists; cards with recipe.init need none)")
    bsc.add_argument("--large-params", type=float, default=135e6,
                     help="also time the scan of a synthetic model of this many weights (0: skip)")
    bfo = cmd(bench, "forest", "mgmp.commands.bench:forest",
              "recover the evaluation families' forest with the edges hidden: F1, roots, MoTHer baseline")
    bfo.add_argument("--pool", default="runs/pools/digits_lineage")
    bfo.add_argument("--top-k", type=int, default=5)
    bfo.add_argument("--figure", metavar="PNG", default="runs/figures/forest.png")
    btr = cmd(bench, "transfer", "mgmp.commands.bench:transfer",
              "leave one domain out: the fused test fit on the other pools decides each pool's pairs at level alpha")
    btr.add_argument("--pools", required=True, metavar="P1,P2,...",
                     help="lineage pools, calibrated or not: two or more for leave-one-domain-out; one alone is decided "
                          "by the shipped test only")
    btr.add_argument("--shipped", metavar="JSON", default=None,
                     help="the fused test every domain is also decided by (default: the one the package ships)")
    btr.add_argument("--references", type=int, default=4, metavar="K", help="independent references per source")
    btr.add_argument("--alpha", type=float, default=0.01)
    btr.add_argument("--seed", type=int, default=0, help="seed of the pairs sampled from other families")
    btr.add_argument("--combiners", default="logistic", metavar="C1,C2",
                     help="learned combinations fit on the other domains, the first the main one: logistic, mgmp-head")
    bsib = cmd(bench, "siblings", "mgmp.commands.bench:siblings",
               "derived from A or a sibling of A via their common source: accuracy per method (backbone-aware)")
    bsib.add_argument("--pool", default="runs/pools/digits_lineage")
    bsib.add_argument("--methods", help="comma-separated subset of weights,inheritance,basin,dna,modeldiff")
    bx = cmd(bench, "index", "mgmp.commands.bench:index", "ancestor retrieval on the lineage pool; FAISS at 1e3..1e6 vectors")
    bx.add_argument("--pool", default="runs/pools/digits_lineage")
    bx.add_argument("--top-k", type=int, default=5)
    bx.add_argument("--sizes", default="1e3,1e4,1e5,1e6", help="simulated registry sizes ('' to skip)")
    bx.add_argument("--threads", type=int, default=2)
    bx.add_argument("--no-retrieval", action="store_true", help="only the simulated scale part")
    bx.add_argument("--one-at-a-time", action="store_true",
                    help="hold each derived suspect out alone (with its descendants), the rest registered; default: "
                         "the whole held-out set at once")
    bx.add_argument("--support", choices=("verdict", "fused"), default="verdict",
                    help="what supports a hit: the fused verdict at --alpha (the re-ranked row with both indexes, and "
                         "DNA only), or the pool's fast fused model (its query calibration first; rows with and without "
                         "the weight index)")
    bx.add_argument("--alpha", type=float, default=0.01)

    for name in LIGHTNING:
        sub.add_parser(name, help=f"LightningCLI {name} of MGMP (see `mgmp {name} --help`)", add_help=False)
    return p


def _handler(target: str) -> Callable[[argparse.Namespace], Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _lightning(argv: list[str]) -> int:
    from mgmp.learned.lightning_cli import cli_main

    return cli_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lightning = bool(argv) and argv[0] in LIGHTNING
    args = None if lightning else build_parser().parse_args(argv)
    debug = args.debug if args is not None else bool(os.environ.get("MGMP_DEBUG"))
    try:
        if lightning:  # LightningCLI parses its own arguments; bad input still gets one line and exit 2
            return _lightning(argv)
        outcome = _handler(args.handler)(args)
        if not isinstance(outcome, Outcome):
            outcome = Outcome(outcome)
        if args.json:
            write_json(args.json, outcome.result)
        return outcome.exit_code
    except MgmpError as e:
        if debug:
            raise
        print(f"mgmp: {e.label}: {first_line(e, None)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mgmp: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the environment refused a read or write (disk full, read-only, file size limit)
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"mgmp: error: {where}{e.strerror or first_line(e, None)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: say so, traceback under --debug
        if debug:
            raise
        print(f"mgmp: internal error: {type(e).__name__}: {first_line(e, None)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
