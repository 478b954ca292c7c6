"""The one scheduling loop behind pool builds and score matrices: nodes of a DAG run on any executor,
each only after its predecessors finished, and every outcome is handled in the calling process."""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from graphlib import TopologicalSorter
from typing import Any, Callable, Hashable, Iterable, Mapping

Start = Callable[[Hashable], "tuple | None"]
Finish = Callable[[Hashable, Any, "BaseException | None"], None]


def run_dag(graph: Mapping[Hashable, Iterable[Hashable]], executor: Executor, start: Start, finish: Finish) -> None:
    """Run ``graph`` ({node: predecessors}) on ``executor``.

    ``start(node)`` returns ``(fn, *args)`` to submit, or None when the node is settled without running
    (already built, blocked by a failed parent); ``finish(node, result, error)`` receives each outcome
    in this process, so registry writes stay with the driver. A node's successors become ready when it
    is finished or settled, whatever the outcome: ``start`` decides what a failure blocks."""
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    pending: dict[Future, Hashable] = {}

    def settle(fut: Future, node: Hashable) -> None:
        error = fut.exception()
        finish(node, None if error is not None else fut.result(), error)
        sorter.done(node)

    while sorter.is_active():
        for node in sorter.get_ready():
            call = start(node)
            if call is None:
                sorter.done(node)
                continue
            fut = executor.submit(*call)
            if fut.done():  # inline executors finish at submit: record it before running the next node
                settle(fut, node)
            else:
                pending[fut] = node
        if pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                settle(fut, pending.pop(fut))
