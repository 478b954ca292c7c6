"""The commands' tables: readable in 80 columns (a terminal's, or a log's: rich prints 80 wide when its output is
not a terminal): model ids kept whole, other cells wrapped onto further lines rather than cut with an ellipsis.

The rows a table shows are in its command's ``--json`` result too, with full-precision values (``mgmp.cli`` writes
every command's result; ``mgmp._jsonio`` writes it atomically)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

NAME_WIDTH = 32  # a name column up to this wide is kept whole; one with longer names shrinks (folds) first


def make_table(columns: Sequence[str], rows: Iterable[Sequence[str]] = (), title: str | None = None,
          caption: str | None = None, names: Iterable[str] = (), numbers: Iterable[str] = ()) -> Table:
    """A compact table (a rule under the headers, two spaces between columns) that wraps instead of cutting.

    Every column folds: a word longer than its column goes on over the next line. ``names`` (model ids) are given
    the width of their longest cell when that is at most ``NAME_WIDTH``, so that when the table must shrink to the
    terminal the other text columns wrap first; ``numbers`` are right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    names, numbers = set(names), set(numbers)
    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              collapse_padding=True)
    for i, col in enumerate(columns):
        width = None
        if col in names:
            longest = max([cell_len(r[i]) for r in rows] + [cell_len(w) for w in col.split()], default=1)
            width = longest if longest <= NAME_WIDTH else None
        t.add_column(col, overflow="fold", justify="right" if col in numbers else "left", width=width)
    for r in rows:
        t.add_row(*r)
    return t


def fits(t: Table, console: Console) -> bool:
    """Whether ``t`` shows on ``console`` without wrapping any cell (its natural width fits)."""
    return console.measure(t, options=console.options.update_width(1 << 16)).maximum <= console.width
