"""Figures shared by the callbacks, benchmarks and the demo report (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GROUP_STYLE = {"source": ("black", "*", 140), "homologous": ("tab:red", "o", 34), "non-homologous": ("tab:blue", "o", 34)}


def _save(fig, path: str | Path, dpi: int = 130) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def dna_tsne(dna: Mapping[str, np.ndarray], groups: Mapping[str, str], path: str | Path,
             title: str = "model-level DNA (t-SNE)", seed: int = 0) -> Path:
    """2-D t-SNE of model-level DNA vectors coloured by group (source / homologous / non-homologous), the MGMP paper's Fig. 4."""
    from sklearn.manifold import TSNE

    ids = sorted(dna)
    x = np.stack([np.asarray(dna[m], dtype=np.float32) for m in ids])
    xy = TSNE(n_components=2, perplexity=max(2.0, min(30.0, (len(ids) - 1) / 3)), init="pca", random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(5, 4))
    for group in ("non-homologous", "homologous", "source"):
        color, marker, size = GROUP_STYLE[group]
        pts = [i for i, m in enumerate(ids) if groups.get(m) == group]
        if pts:
            ax.scatter(xy[pts, 0], xy[pts, 1], c=color, marker=marker, s=size, label=group)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path, dpi=120)


def score_heatmap(grid: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path, title: str,
                  vmin: float = 0.0, vmax: float = 1.0, annotate: bool = False) -> Path:
    """Rows × columns matrix of one score (NaN = not compared), optionally with the values written in the cells."""
    grid = np.asarray(grid, dtype=float)
    fig, ax = plt.subplots(figsize=(max(5, len(cols) * (0.9 if annotate else 0.22)), 1.4 + 0.5 * len(rows)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=90 if not annotate else 30, ha="center" if not annotate else "right",
                  fontsize=6 if not annotate else 8)
    if annotate:
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save(fig, path)


def grouped_strip(values: Mapping[str, Sequence[float]], path: str | Path, title: str, ylabel: str) -> Path:
    """One column of points per group (e.g. Zest distances of related vs unrelated pairs), with each group's mean."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for i, (group, vals) in enumerate(values.items()):
        color = GROUP_STYLE.get(group, ("tab:gray",))[0]
        vals = np.asarray(vals, dtype=float)
        jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
        ax.scatter(i + jitter, vals, c=color, s=36, zorder=3)
        if len(vals):
            ax.hlines(vals.mean(), i - 0.2, i + 0.2, colors=color, linewidth=2)
    ax.set_xticks(range(len(values)), list(values))
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def budget_curves(curve: Mapping[str, Mapping[int, Mapping[str, float]]], methods: Sequence[str], path: str | Path,
                  title: str = "detection rate against the thief's query budget") -> Path:
    """Small multiples, one per method: detection rate (y) against query budget (x, log) with a line per attack."""
    cols = min(4, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, method in zip(axes.flat, methods):
        for attack, by_budget in sorted(curve.items()):
            budgets = sorted(by_budget)
            ax.plot(budgets, [by_budget[b].get(method, np.nan) for b in budgets], marker="o", label=attack)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("queries", fontsize=8)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes[0][0].set_ylabel("detected")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=0.2)
    return _save(fig, path)


def _forest_layout(models: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Roots on top, each generation one row down; subtrees side by side in depth-first order."""
    kids: dict[str, list[str]] = {}
    has_parent = {c for _, c in edges}
    for p, c in edges:
        kids.setdefault(p, []).append(c)
    pos: dict[str, tuple[float, float]] = {}

    def place(m: str, depth: int) -> None:
        if m in pos:
            return
        pos[m] = (float(len(pos)), -float(depth))
        for c in sorted(kids.get(m, [])):
            place(c, depth + 1)

    for m in sorted(m for m in models if m not in has_parent):
        place(m, 0)
    for m in sorted(models):  # models on a cycle-free remainder (never for an arborescence)
        place(m, 0)
    return pos


def forest_figure(models: Sequence[str], recovered: Sequence[tuple[str, str]], path: str | Path,
                  truth: Sequence[tuple[str, str]] | None = None, title: str = "recovered lineage forest") -> Path:
    """The recovered forest (edges green where true, red where not, when the truth is known) next to the true one."""
    panels = [("true forest", truth, None)] if truth is not None else []
    panels.append((title, recovered, set(truth) if truth is not None else None))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 0.22 * len(models)) * len(panels) / 1.4, 4.5),
                             squeeze=False)
    for ax, (name, edges, true) in zip(axes[0], panels):
        pos = _forest_layout(models, edges)
        for p, c in edges:
            (x0, y0), (x1, y1) = pos[p], pos[c]
            color = "0.4" if true is None else ("tab:green" if (p, c) in true else "tab:red")
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8})
        xy = np.array([pos[m] for m in models])
        ax.scatter(xy[:, 0], xy[:, 1], s=14, c="black", zorder=3)
        if len(models) <= 60:
            for m in models:
                ax.text(pos[m][0], pos[m][1] - 0.12, m, fontsize=5, rotation=70, ha="right", va="top")
        ax.set_title(name)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylim(xy[:, 1].min() - 1.5, 0.5)
    return _save(fig, path)
