"""``mgmp score METHOD A B``: one pair score against the source's null (cached in the source's pool or
``$MGMP_CACHE``), or the fused verdict: a test at level α with the shipped calibration, or a pool's own."""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mgmp.calibration.backbone import SiblingRule, backbone_verdict
from mgmp.calibration.fusion import fused_probability
from mgmp.calibration.null import DEFAULT_REFERENCES, source_null
from mgmp.calibration.store import Calibration
from mgmp.calibration.thresholds import decide
from mgmp.calibration.verdict import Test, pool_test, verdict
from mgmp.commands._common import parse_params, pool_of
from mgmp.commands._tables import make_table
from mgmp.scores import Pair, compute, create_score, load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool

ZEST_RELATIVE_THRESHOLD = 1.0  # relative distance below the independent references' mean


@contextmanager
def reference_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar (on stderr) for the per-source stage: training the references, scoring them."""
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        yield update


def chosen_test(calibrated: Pool | None, lm: bool = False) -> tuple[Test | None, dict | None, str]:
    """The test to decide with: for a causal LM source, the LM test; else ``calibrated``'s own (its legacy fused
    model when it has no test), else the one the package ships; with the label printed beside the verdict."""
    cal = Calibration.load(calibrated)
    if calibrated is not None and cal.fused_test is None and not lm:
        if cal.fused is None:
            raise BadInput(f"{calibrated.root}: no fused model; run `mgmp calibrate {calibrated.root}` first")
        return None, cal.fused, f"legacy fused model of {calibrated.root}"
    test, label = pool_test(calibrated, lm, asked=calibrated is not None)
    return test, None, label


def legacy_fused(pair: Pair, stored: dict, calibrated: Pool, rule: SiblingRule, cache: bool,
                 max_queries: int | None) -> dict:
    """P(lineage) of a pool's logistic regression over raw pair scores (pools calibrated before the fused test)."""
    p, values = fused_probability(stored, pair, cache=cache, max_queries=max_queries)
    backbone = backbone_verdict(pair, rule, cache=cache) if p >= 0.5 else None
    text = backbone["text"] if backbone else "derived from the source" if p >= 0.5 else "not derived"
    return {"verdict": text, "derived": p >= 0.5, "P": p, "scores": values, "scores_used": stored["columns"],
            "backbone": backbone}


def print_verdict(title: str, out: dict) -> None:
    console = Console()
    if "p_value" not in out:
        console.print(f"{title}: [bold]{out['verdict']}[/] (P(lineage) = {out['P']:.3f}, {out['calibration']})\n"
                      f"  scores used: {', '.join(out['scores_used'])}")
        return
    if out.get("null_unlike_source"):
        console.print(f"{title}: [bold]{out['verdict']}[/]\n  the fused test is not applied: "
                      f"{out['null_unlike_source']}")
    else:
        shown_p = f"P {out['P']:.3f}, " if math.isfinite(out["P"]) else ""
        console.print(f"{title}: [bold]{out['verdict']}[/]\n  {shown_p}p-value {out['p_value']:.3g} "
                      f"{'<=' if out['derived'] else '>'} alpha {out['alpha']:g} ({out['tail']}; {out['calibration']})")
    if out.get("null_missing"):
        console.print(f"  no null for this source ({out['null_missing']}): only the weight-space scores decide")
    rows = [(col, f"{s['value']:.4f}", f"{s['mean']:.4f} ± {s['sd']:.4f}", f"{s['z']:.1f}", f"{s['p']:.3g}")
            for col, s in out["scores"].items()] + [(col, f"{v:.4f}", "own rule: raw value", "", "")
                                                    for col, v in out["raw"].items()]
    console.print(make_table(("score", "value", "null mean ± sd", "z", "p"), rows, names=("score",),
                             numbers=("value", "z", "p"),
                             title="the weight-space scores (no null: the suspect answers another task)"
                                   if not out["references"] else
                                   f"each score against the source's {out['references']} independent references"
                                   + (f" (fine-tunes of {out['references_from']})"
                                      if out.get("references_from") not in (None, "scratch") else "")))


def run_fused(args, pair: Pair, calibrated: Pool | None) -> dict:
    if args.param:
        raise BadInput("fused uses the parameters its calibration was fitted with; --param is not accepted")
    if args.references == 0:
        raise BadInput("fused tests the suspect against the source's null: --references must be >= 2")
    lm = getattr(pair.source, "is_lm", False)
    if lm and args.calibration:
        raise BadInput("--calibration: a causal LM source is decided by the LM test (Bonferroni, nothing fitted); "
                       "leave it out")
    test, legacy, label = chosen_test(calibrated, lm)
    rule = SiblingRule.from_dict(Calibration.load(calibrated).siblings if calibrated else None)
    cache = not args.no_cache
    if legacy is not None:
        out = legacy_fused(pair, legacy, calibrated, rule, cache, args.max_queries)
    else:
        with reference_progress() as progress:
            out = verdict(pair, test, args.alpha, args.references or DEFAULT_REFERENCES, rule, cache, args.max_queries,
                          progress)
    foreign = calibrated is not None and (pair.pool is None or pair.pool.root.resolve() != calibrated.root.resolve())
    out = {"source": args.source, "suspect": args.suspect, "method": "fused", "value": out["P"],
           "related": out["derived"], "calibration": label + (", another domain" if foreign else ""), **out}
    print_verdict(f"fused({args.source}, {args.suspect})", out)
    return out


def run(args) -> dict:
    if args.references is not None and (args.references < 0 or args.references == 1):
        raise BadInput(f"--references must be 0 (no null) or >= 2, got {args.references}")
    with pool_of(args.source) as pool, ExitStack() as stack:
        calibrated = stack.enter_context(Pool.open(args.calibration)) if args.calibration else pool
        pair = load_pair(args.source, args.suspect, pool, args.data, args.task, args.suspect_data, args.suspect_task,
                         timeout=args.timeout, base=args.base)
        if args.method == "fused":
            own = Calibration.load(calibrated)
            if calibrated is not None and not args.calibration and own.fused is None and own.fused_test is None:
                calibrated = None  # an uncalibrated pool of the source: the shipped calibration
            return run_fused(args, pair, calibrated)
        method = create_score(args.method, **parse_params(args.param))
        result = compute(method, pair, cache=not args.no_cache, max_queries=args.max_queries)
        calibration = Calibration.load(calibrated)
        threshold = args.threshold if args.threshold is not None else calibration.threshold(method)
        against = None
        if args.references != 0 and method.needs != "weights":
            with reference_progress() as progress:  # asked for (--references K), else the null when cached
                null = source_null(pair, args.references or DEFAULT_REFERENCES,
                                   {method.name: (method.name, method.params())}, progress, build=bool(args.references))
            against = null.statistics({method.name: result.value})[method.name] if null else None
    out = {"source": args.source, "suspect": args.suspect, "params": method.params(), **result.to_dict()}
    if threshold is None and args.method == "zest" and method.relative:
        threshold = ZEST_RELATIVE_THRESHOLD
    line = f"{args.method}({args.source}, {args.suspect}) = {result.value:.4f}"
    if against is not None:
        out["null"] = against
        line += (f"; null {against['mean']:.4f} ± {against['sd']:.4f} over {against['references']} independent "
                 f"references of the source: z {against['z']:.1f}, p {against['p']:.3g}")
    elif method.needs == "weights":
        line += " (weight space: its own rule, not read against the references)"
    elif args.references is None:
        out["null"] = None
        line += f" (--references {DEFAULT_REFERENCES}: against the source's null)"
    if threshold is not None:
        out["threshold"] = threshold
        out["related"] = decide(result.value, threshold, result.higher_is_related)
        line += f" (threshold {threshold:.4f}) -> [bold]{'lineage' if out['related'] else 'no lineage'}[/]"
    if args.method == "inheritance" and "drift" in result.extra:
        rule = SiblingRule.from_dict(calibration.siblings)
        out["relation"] = rule.decide(result.value, result.extra["drift"])
        line += f" -> [bold]{out['relation']}[/] (threshold {rule.threshold:.2f}, drift cap {rule.max_drift:.1f})"
    extras = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.extra.items()
                       if not isinstance(v, (list, dict)))
    Console().print(line + (f"\n  {extras}" if extras else "") + (" [dim](cached)[/]" if result.cached else ""))
    return out
