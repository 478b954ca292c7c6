"""``mgmp score-matrix DIR --method M``: all-pairs scores of a pool, in parallel, cached in its registry."""
from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mgmp.commands import Outcome
from mgmp.commands._common import id_list, parse_params
from mgmp.commands._tables import fits, make_table
from mgmp.scores import SCORES
from mgmp.scores.matrix import MatrixReport, score_matrix
from model_pool.executors import check_executor
from model_pool.pool import Pool

console = Console(stderr=True)
MAX_COLUMNS = 16  # wider matrices (or any too wide for the terminal) are printed as the most related pairs


def _fmt(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.3f}"


def show(report: MatrixReport) -> None:
    """The matrix (sources x suspects) when it fits the terminal unwrapped, else the 30 most related pairs (every
    value is in the ``--json`` result: ``values`` and ``matrix``)."""
    title = (f"{report.method} on {report.pool}: {len(report.computed)} computed, {len(report.cached)} cached, "
             f"{len(report.not_applicable)} n/a, {len(report.failed)} failed in {report.seconds:.1f}s")
    out = Console()
    table = make_table(("source \\ suspect", *report.suspects),
                       ([a, *("-" if a == b else _fmt(report.values.get((a, b))) for b in report.suspects)]
                        for a in report.sources), title=title, names=("source \\ suspect",), numbers=report.suspects)
    if len(report.suspects) > MAX_COLUMNS or not fits(table, out):
        sign = 1 if SCORES.get(report.method).higher_is_related else -1
        ranked = sorted(((v, p) for p, v in report.values.items() if math.isfinite(v)), key=lambda t: -sign * t[0])
        table = make_table(("source", "suspect", report.method), ((a, b, _fmt(v)) for v, (a, b) in ranked[:30]),
                           title=title + " (most related 30)", names=("source", "suspect"), numbers=(report.method,))
    out.print(table)


def run(args) -> Outcome:
    check_executor(args.executor, args.workers, args.address)
    with Progress(TextColumn("[bold]score-matrix[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task("", total=None)

        def on_event(kind, pair, info):
            if kind == "planned":
                bar.update(task, total=info["pairs"])
                return
            bar.advance(task)
            if kind == "computed":
                bar.update(task, description=f"{pair[0]} vs {pair[1]} = {info['value']:.3f} ({info['seconds']:.1f}s)")
            elif kind == "failed":
                bar.console.print(f"[red]failed[/] {pair[0]} vs {pair[1]}: {info['error']}")

        with Pool.open(args.dir) as pool:
            report = score_matrix(pool, args.method, parse_params(args.param), id_list(args.sources),
                                  id_list(args.suspects), executor=args.executor, workers=args.workers,
                                  address=args.address, on_event=on_event)
    show(report)
    return Outcome(report.to_dict(), 0 if report.ok else 1)
