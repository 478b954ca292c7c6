"""``mgmp pool build|ls|add|rm|verify|repair|backup``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.tree import Tree

from mgmp.commands import Outcome
from mgmp.commands._tables import make_table
from model_pool.errors import BadInput
from model_pool.executors import check_executor
from model_pool.guards import load_json
from model_pool.plan import Plan, load_plan
from model_pool.registry import ModelRow, PoolRegistry

if TYPE_CHECKING:
    from model_pool.builder import BuildReport

# the builder, importer, verifier and repair import torch: each command imports what it runs (`pool ls` reads
# the registry alone)

console = Console(stderr=True)


def build_with_progress(plan: Plan, out: str | Path, workers: int = 1, resume: bool = False, executor: str = "local",
                        address: str | None = None) -> BuildReport:
    """``build_pool`` with a progress bar and one line per failed or blocked job."""
    from model_pool.builder import build_pool

    with Progress(TextColumn("[bold]pool build[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task("", total=len(plan.jobs))

        def on_event(kind, job_id, info):
            bar.advance(task)
            if kind == "built":
                bar.update(task, description=f"{job_id} acc={info.get('test_acc', float('nan')):.3f} ({info['seconds']:.1f}s)")
            elif kind == "failed":
                bar.console.print(f"[red]failed[/] {job_id}: {info['error']}")
            elif kind == "blocked":
                bar.console.print(f"[yellow]skipped[/] {job_id}: a parent failed")

        report = build_pool(plan, out, workers=workers, resume=resume, on_event=on_event, executor=executor,
                            address=address)
    console.print(f"built {len(report.built)}, already there {len(report.skipped)}, failed {len(report.failed)}, "
                  f"blocked {len(report.blocked)} in {report.seconds:.1f}s -> {out}")
    return report


def build(args) -> Outcome | dict[str, Any]:
    plan = load_plan(args.config)
    check_executor(args.executor, args.workers, args.address)
    if args.dry_run:
        order = plan.order()
        jobs = plan.by_id()
        Console().print(make_table(("id", "recipe", "parents", "arch", "dataset", "task", "split"),
                                   ((i, jobs[i].recipe, ", ".join(jobs[i].parents), jobs[i].arch or "(parent's)",
                                     jobs[i].dataset, "" if jobs[i].task is None else jobs[i].task, jobs[i].split or "")
                                    for i in order),
                                   title=f"plan {plan.name}: {len(order)} models", names=("id",)))
        return {"plan": plan.name, "jobs": [jobs[i].__dict__ for i in order]}
    report = build_with_progress(plan, args.out, args.workers, args.resume, args.executor, args.address)
    return Outcome(report.to_dict(), 0 if report.ok else 1)


def _row_label(row: ModelRow) -> str:
    acc = row.metrics.get("test_acc")
    acc_s = f" acc={acc:.3f}" if isinstance(acc, (int, float)) else ""
    extra = f" [dim](+ {', '.join(row.parents[1:])})[/]" if len(row.parents) > 1 else ""
    split = f" [magenta]{row.split}[/]" if row.split else ""
    return f"[bold]{row.id}[/] [cyan]{row.relation}[/] {row.arch} {row.task or ''}{acc_s}{split}{extra}"


def ls(args) -> dict[str, Any]:
    with PoolRegistry(args.dir) as reg:
        rows = reg.models()
        by_id = {r.id: r for r in rows}
        out = Console()
        if args.tree:
            for root in reg.roots():
                tree = Tree(_row_label(by_id[root]))
                stack = [(root, tree)]
                while stack:
                    node, branch = stack.pop()
                    for child in sorted(c for c in reg.children(node) if by_id[c].parents[0] == node):
                        stack.append((child, branch.add(_row_label(by_id[child]))))
                out.print(tree)
        else:
            acc = lambda r: "" if r.metrics.get("test_acc") is None else f"{r.metrics['test_acc']:.3f}"  # noqa: E731
            out.print(make_table(("id", "relation", "parents", "arch", "task", "acc", "split"),
                                 ((r.id, r.relation, ", ".join(r.parents), r.arch, r.task or "", acc(r), r.split or "")
                                  for r in rows), title=f"{args.dir}: {len(rows)} models (acc: test accuracy)",
                                 names=("id",), numbers=("acc",)))
        return {"pool": str(args.dir), "models": [r.to_dict() for r in rows], "roots": reg.roots()}


def _json_arg(text: str | None, flag: str) -> dict | None:
    """A JSON-object option (``--arch-kwargs``, ``--input``), refused in one line when malformed or too deep."""
    if text is None:
        return None
    value = load_json(text, flag)
    if not isinstance(value, dict):
        raise BadInput(f"{flag} must be a JSON object")
    return value


def add(args) -> dict[str, Any]:
    """Register a model; ``--public`` marks a public backbone, ``--alias`` its hub names; a ``base_model`` its
    HF model card claims is recorded as ``claimed_parent`` and checked against the weights."""
    from model_pool.importer import import_model
    from model_pool.io import load_model_dir
    from model_pool.model_files import base_model_claim
    from model_pool.pool import Pool

    arch_kwargs, input_spec = _json_arg(args.arch_kwargs, "--arch-kwargs"), _json_arg(args.input, "--input")
    if not Path(args.dir).exists():  # a user's first registry: `mgmp pool add my_pool DIR` starts it
        PoolRegistry(args.dir, create=True).close()
        console.print(f"created an empty pool at {args.dir}")
    tags = ({"public": True} if args.public else {}) | ({"aliases": args.alias} if args.alias else {})
    claimed = base_model_claim(args.model) if Path(args.model).is_dir() else []
    if claimed:
        from mgmp.scores.inheritance import check_claimed_base  # imports torch: only when a claim is checked

        with Pool.open(args.dir) as pool:
            tags["claimed_parent"] = check_claimed_base(pool, load_model_dir(args.model)[0], claimed)
    model_id = import_model(args.dir, args.model, model_id=args.id, parents=args.parent, relation=args.relation,
                            arch=args.arch, arch_kwargs=arch_kwargs, num_classes=args.num_classes,
                            input_spec=input_spec, tags=tags)
    console.print(f"registered {model_id} in {args.dir}" + (" (public backbone)" if args.public else ""))
    if claim := tags.get("claimed_parent"):
        evidence = ("not in the registry: unchecked" if claim["id"] is None else
                    f"{claim['id']}, weight cosine {claim['weight_cosine']:.3f}: "
                    + ("consistent" if claim["consistent"] else "NOT supported by the weights"))
        console.print(f"  model card claims base_model {', '.join(claim['names'])} -> {evidence}")
    with Pool.open(args.dir) as pool:
        return pool.registry.get(model_id).to_dict()


def verify(args) -> Outcome:
    """Check files, registry rows, caches and indexes; exit code 1 when anything is wrong."""
    from model_pool.verify import verify_pool

    rep = verify_pool(args.dir)
    out = Console()
    if rep.ok:
        out.print(f"{args.dir}: {rep.models} models, files, registry rows, caches and indexes consistent")
        return Outcome(rep.to_dict())
    for name, items in rep.to_dict().items():
        if isinstance(items, list) and items:
            out.print(f"[bold]{name.replace('_', ' ')}[/] ({len(items)}): " + "; ".join(items[:20]))
    return Outcome(rep.to_dict(), 1)


def repair(args) -> dict[str, Any]:
    """Rebuild ``pool.sqlite`` from the model directories; say what was restored, kept and dropped."""
    from model_pool.repair import repair_pool

    rep = repair_pool(args.dir, force=args.force)
    out = Console()
    out.print(f"{args.dir}: registry rebuilt: {rep.models} models, {rep.edges} edges, {rep.tensors} cached tensors"
              + (f"; damaged file kept as {rep.kept_as}" if rep.kept_as else ""))
    for label, items in (("kept from the damaged file", rep.meta_kept), ("not restored", rep.skipped),
                         ("dropped", rep.dropped)):
        if items:
            out.print(f"[bold]{label}[/] ({len(items)}): " + "; ".join(items[:20]))
    return rep.to_dict()


def backup(args) -> dict[str, Any]:
    from model_pool.repair import backup_registry

    result = backup_registry(args.dir, args.out)
    console.print(f"backed up the registry ({result['models']} models) to {result['backup']}")
    return result


def rm(args) -> Outcome:
    """Remove models (and with ``--with-descendants`` their descendants): rows, cached files, directories."""
    from model_pool.remove import remove_models

    rep = remove_models(args.dir, args.ids, with_descendants=args.with_descendants)
    out = Console()
    out.print(f"{args.dir}: removed {len(rep.ids)} models: {', '.join(rep.ids)}")
    if rep.descendants:
        out.print(f"  descendants among them: {', '.join(rep.descendants)}")
    out.print(f"  files: {len(rep.dirs)} model directories, {len(rep.cache)} cached outputs and generated models")
    out.print("  rows: " + ", ".join(f"{n} {table}" for table, n in rep.rows.items()))
    for line in rep.indexes:
        out.print(f"  {line}")
    if rep.left:
        console.print(f"[yellow]not removed[/] ({len(rep.left)}, `mgmp pool build --resume` or a rerun clears them): "
                      + "; ".join(rep.left[:20]))
    return Outcome(rep.to_dict(), 1 if rep.left else 0)
