"""`gear tune plot`: the goal metric against each parameter, and over time, drawn by plotting libraries
made for it: matplotlib (Agg, no display needed) for the PNG, plotext for the terminal. Both are
imported only here, when a plot is asked for."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .results import Trial, Tuning


def _axis(trials: list[Trial], name: str) -> tuple[list[float], list[float], list[str] | None]:
    """x and y of the trials that have both; category labels when the parameter is not numeric."""
    pairs = [(t.values.get(name), t.score) for t in trials if t.score is not None and name in t.values]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in pairs)
    if numeric:
        return [float(x) for x, _ in pairs], [float(y) for _, y in pairs if y is not None], None  # type: ignore[arg-type]
    labels = sorted({str(x) for x, _ in pairs})
    jitter = random.Random(0)   # the same picture every time
    xs = [labels.index(str(x)) + jitter.uniform(-0.15, 0.15) for x, _ in pairs]
    return xs, [float(y) for _, y in pairs if y is not None], labels


def _over_time(trials: list[Trial], metric: str) -> tuple[str, list[tuple[str, list[float], list[float]]]]:
    """Each trial's series of the metric, and what x is: the step when every point has one, else the
    seconds since the trial's first point (gear_metrics stamps each), else the order logged."""
    series = [(t.execution.id, t.metrics.series(metric)) for t in trials]
    series = [(label, points) for label, points in series if points]
    every = [p for _, points in series for p in points]
    axis = "step" if all(p.step is not None for p in every) else (
        "seconds" if all(p.time is not None for p in every) else "order logged")
    lines = []
    for label, points in series:
        if axis == "step":
            xs = [float(p.step or 0) for p in points]
        elif axis == "seconds":
            xs = [float((p.time or 0) - (points[0].time or 0)) for p in points]
        else:
            xs = [float(i) for i in range(len(points))]
        lines.append((label, xs, [p.value for p in points]))
    return axis, lines


def png(path: Path, tuning: Tuning, trials: list[Trial], metric: str, goal: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")   # no display on a login node
    import matplotlib.pyplot as plt

    names = tuning.parameter_names
    panels = len(names) + 1
    columns = min(panels, 3)
    rows = (panels + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    best = trials[0] if trials and trials[0].score is not None else None
    for axis, name in zip(flat, names, strict=False):
        xs, ys, labels = _axis(trials, name)
        axis.scatter(xs, ys, s=28, alpha=0.8, color="tab:blue")
        if best is not None and name in best.values and labels is None:
            axis.scatter([float(best.values[name])], [best.score], s=90, facecolors="none", edgecolors="tab:red",
                         label=f"best {best.execution.id}")
            axis.legend(fontsize=7)
        if labels is not None:
            axis.set_xticks(range(len(labels)), labels)
        elif name in tuning.log_scale:
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axis = flat[len(names)]
    x_name, lines = _over_time(trials, metric)
    for label, xs, ys in lines:
        axis.plot(xs, ys, marker=".", linewidth=1, alpha=0.7, label=label)
    axis.set_xlabel(x_name)
    axis.set_ylabel(metric)
    axis.set_title("over time", fontsize=9)
    axis.grid(alpha=0.3)
    if len(trials) <= 8:
        axis.legend(fontsize=6)
    for extra in flat[panels:]:
        extra.set_visible(False)
    figure.suptitle(f"{tuning.label}: "
                    f"{metric} ({goal.lower()})", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def terminal(tuning: Tuning, trials: list[Trial], metric: str, goal: str, width: int | None = None) -> str:
    """The same panels as text, one after the other."""
    import plotext as plt  # type: ignore[import-untyped]

    out: list[str] = []
    for name in tuning.parameter_names:
        plt.clear_figure()
        xs, ys, labels = _axis(trials, name)
        if not xs:
            continue
        plt.scatter(xs, ys, marker="dot")
        if labels is not None:
            plt.xticks(list(range(len(labels))), labels)
        elif name in tuning.log_scale and min(xs) > 0:
            plt.xscale("log")
        plt.title(f"{metric} against {name}")
        plt.xlabel(name)
        _size(plt, width)
        out.append(plt.uncolorize(plt.build()))
    x_name, lines = _over_time(trials, metric)
    if lines:
        plt.clear_figure()
        for label, xs, ys in lines[:12]:
            plt.plot(xs, ys, label=label if len(lines) <= 6 else None)
        plt.title(f"{metric} over time ({goal.lower()})")
        plt.xlabel(x_name)
        _size(plt, width)
        out.append(plt.uncolorize(plt.build()))
    plt.clear_figure()
    return "\n".join(out)


def _size(plt: Any, width: int | None) -> None:
    plt.theme("clear")   # plain text (and uncolorize takes the resets): it reads the same in a file or a pipe
    plt.plotsize(width or 72, 16)
