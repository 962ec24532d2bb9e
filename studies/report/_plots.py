"""Figures: activation shapes, learnable-activation evolution, study summaries. Matplotlib, Agg backend."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import torch
from matplotlib.figure import Figure

import activations
from studies.spec import StudyResults

# Figures are built with matplotlib's object API (no pyplot): no backend chosen and no figure kept for the
# whole process, so a worker drawing hundreds of figures holds none of them.
log = logging.getLogger(__name__)
TAB20 = matplotlib.colormaps["tab20"].colors
VIRIDIS = matplotlib.colormaps["viridis"]


def plot_activations(path: str | Path, names: list[str] | None = None, x_range: tuple[float, float] = (-5.0, 5.0)) -> Path:
    """Every activation and its first derivative on one figure (as the TeLU paper's figures 9–11)."""
    names = names or activations.names()
    x = torch.linspace(*x_range, 1001, dtype=torch.float64, requires_grad=True)
    fig = Figure(figsize=(14, 6), layout="constrained")
    ax_f, ax_d = fig.subplots(1, 2)
    colors = TAB20
    for i, name in enumerate(names):
        try:  # a plugin may need arguments, or not take a (N, 1) input: it is left out of the figure, not the listing
            module = activations.create(name, num_features=1, spatial_dims=0).double().eval()
            y = module(x.view(-1, 1)).view(-1)
            (dy,) = torch.autograd.grad(y.sum(), x)
        except Exception as exc:  # noqa: BLE001 — someone else's code
            log.warning("activation %r left out of the figure: %s: %s", name, type(exc).__name__, exc)
            continue
        style = "-" if activations.entry(name).learnable or name == "telu" else "--"
        ax_f.plot(x.detach(), y.detach(), style, label=name, lw=1.4, color=colors[i % 20])
        ax_d.plot(x.detach(), dy, style, label=name, lw=1.4, color=colors[i % 20])
    ax_f.set(title="f(x)", xlabel="x", ylim=(-2, 5))
    ax_d.set(title="f'(x)", xlabel="x", ylim=(-0.5, 1.6))
    for ax in (ax_f, ax_d):
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.grid(alpha=0.3)
    ax_d.legend(ncol=2, fontsize=8, loc="upper left")
    fig.suptitle("actstudy activations at initialisation (PWLU: Phase I = ReLU; LSLU: untrained, eval mode)")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_formula_check(check, path: str | Path) -> Path:
    """A checked formula (studies.spec.FormulaCheck): its curve and derivative, with the verdict in the title."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_f, ax_d = fig.subplots(1, 2)
    nan = float("nan")
    y = [nan if v is None else v for v in check.curve.y]
    dy = [nan if v is None else v for v in check.curve.dy]
    ax_f.plot(check.curve.x, y, color="tab:blue", lw=1.6)
    ax_d.plot(check.curve.x, dy, color="tab:orange", lw=1.6)
    ax_f.set(title=f"f(x) = {check.expr}", xlabel="x")
    ax_d.set(title="f'(x)", xlabel="x")
    for ax in (ax_f, ax_d):
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.grid(alpha=0.3)
    verdict = "passes the numerical check" if check.ok else f"refused: {len(check.findings)} finding(s), see the text"
    fig.suptitle(f"{check.label}: {verdict}", color="black" if check.ok else "tab:red")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _epochs_to_draw(n: int, most: int = 6) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _of_channel(snap: dict, name: str, channel: int | None):
    """A PWLU snapshot's value for one channel (channel-wise) or the layer's (layer-wise: channel None)."""
    return snap[name] if channel is None else snap[name][channel]


def _pwlu_curve(snap: dict, channel: int | None, xs: torch.Tensor) -> torch.Tensor:
    def pick(name: str):
        return _of_channel(snap, name, channel)

    lo, hi = float(pick("left_bound")), float(pick("right_bound"))
    kl, kr = float(pick("left_slope")), float(pick("right_slope"))
    pts = torch.tensor(pick("points"), dtype=torch.float64)
    grid = torch.linspace(lo, hi, len(pts), dtype=torch.float64)
    inside = torch.from_numpy(np.interp(xs.numpy(), grid.numpy(), pts.numpy()))
    left = pts[0] + (xs - lo) * kl
    right = pts[-1] + (xs - hi) * kr
    return torch.where(xs < lo, left, torch.where(xs > hi, right, inside))


def plot_pwlu_evolution(history: list[dict], title: str, max_channels: int = 4):
    """PWLU's shape at several epochs on top of each other, its bounds B_L, B_R marked (dotted, and the points at
    them), one panel per channel (the first `max_channels`) or one for a layer-wise PWLU (as the PWLU paper's figures)."""
    last = history[-1]["state"]
    channelwise = isinstance(last["left_bound"], list)
    channels = list(range(min(max_channels, len(last["left_bound"])))) if channelwise else [None]
    cols = min(2, len(channels))
    rows = -(-len(channels) // cols)
    width, height = 5.2 * cols, 3.8 * rows
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    # Fixed margins in inches, not constrained_layout: its solver took half of each figure's time, and every
    # PWLU trial draws one per layer when it ends (bench/trial.py, "final artifacts").
    fig.subplots_adjust(left=0.65 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.6 / height, wspace=0.25, hspace=0.4)
    for ax in axes.flat[len(channels):]:
        ax.set_visible(False)
    picks = _epochs_to_draw(len(history))
    cmap = VIRIDIS

    for ax, ch in zip(axes.flat, channels, strict=False):
        bounds = [(float(_of_channel(h["state"], "left_bound", ch)), float(_of_channel(h["state"], "right_bound", ch)))
                  for h in history]
        lo = min(b[0] for b in bounds)
        hi = max(b[1] for b in bounds)
        margin = 0.25 * (hi - lo)
        xs = torch.linspace(lo - margin, hi + margin, 400, dtype=torch.float64)
        for k, i in enumerate(picks):
            h, color = history[i], cmap(k / max(1, len(picks) - 1))
            ax.plot(xs, _pwlu_curve(h["state"], ch, xs), color=color, lw=1.3, label=f"epoch {h['epoch']}")
            (b_lo, b_hi), pts = bounds[i], _of_channel(h["state"], "points", ch)
            ax.plot([b_lo, b_hi], [pts[0], pts[-1]], "o", color=color, ms=3.5)
            for b in (b_lo, b_hi):
                ax.axvline(b, color=color, ls=":", lw=0.8)
        ax.set(title=f"channel {ch}" if ch is not None else "layer-wise", xlabel="x", ylabel="PWLU(x)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="dotted: B_L, B_R", title_fontsize=7)
    fig.suptitle(title)
    return fig


def lslu_series(snap: dict, xs: torch.Tensor) -> torch.Tensor:
    """LSLU's series before its kernel: ReLU(s_n(…s_1(x))), s_i(x) = θ_i·ReLU(x) + ω_i."""
    y = xs
    for theta, omega in zip(snap["theta"], snap["omega"], strict=False):
        y = theta * torch.relu(y) + omega
    return torch.relu(y)


def plot_lslu_evolution(history: list[dict], title: str):
    """LSLU's θ_i and ω_i over epochs, and the series' shape at several epochs on top of each other."""
    fig = Figure(figsize=(13, 3.6))
    ax_t, ax_o, ax_s = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.5 / 3.6, top=1 - 0.65 / 3.6, wspace=0.22)  # see plot_pwlu_evolution
    epochs = [h["epoch"] for h in history]
    for i in range(len(history[-1]["state"]["theta"])):
        ax_t.plot(epochs, [h["state"]["theta"][i] for h in history], marker=".", label=f"θ_{i}")
        ax_o.plot(epochs, [h["state"]["omega"][i] for h in history], marker=".", label=f"ω_{i}")
    for ax in (ax_t, ax_o):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_t.set(title="θ (starts at 1)", xlabel="epoch")
    ax_o.set(title="ω (starts at 0)", xlabel="epoch")
    xs = torch.linspace(-3, 3, 301, dtype=torch.float64)
    picks = _epochs_to_draw(len(history))
    for k, i in enumerate(picks):
        ax_s.plot(xs, lslu_series(history[i]["state"], xs), color=VIRIDIS(k / max(1, len(picks) - 1)), lw=1.3,
                  label=f"epoch {history[i]['epoch']}")
    ax_s.set(title="series ReLU(s_n(…s_1(x))), before the kernel", xlabel="x")
    for ax in (ax_t, ax_o, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_formula_evolution(history: list[dict], title: str):
    """A formula's learnable parameters over epochs (per channel: the mean, and the channels' range shaded),
    and its curve at several epochs (per channel parameters at their mean)."""
    names = list(history[-1]["state"]["params"])
    fig = Figure(figsize=(4.3 * (len(names) + 1), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names) + 1, squeeze=False)[0]
    epochs = [h["epoch"] for h in history]
    for ax, name in zip(axes, names, strict=False):
        values = [h["state"]["params"][name] for h in history]
        if isinstance(values[-1], list):
            ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values], alpha=0.25, label="channels' range")
            ax.plot(epochs, [sum(v) / len(v) for v in values], marker=".", label="channel mean")
            ax.legend(fontsize=7)
        else:
            ax.plot(epochs, values, marker=".")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
    ax_s = axes[-1]
    xs = torch.linspace(-4, 4, 321, dtype=torch.float64)
    picks = _epochs_to_draw(len(history))
    for k, i in enumerate(picks):
        ax_s.plot(xs, activations.curve_at(history[i]["state"], xs), color=VIRIDIS(k / max(1, len(picks) - 1)), lw=1.3,
                  label=f"epoch {history[i]['epoch']}")
    ax_s.set(title=history[-1]["state"]["formula"], xlabel="x")
    ax_s.grid(alpha=0.3)
    ax_s.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_evolution(kind: str, history: list[dict], title: str):
    plots = {"pwlu": plot_pwlu_evolution, "lslu": plot_lslu_evolution, "formula": plot_formula_evolution}
    return plots[kind](history, title)


def slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)


def save(fig, path: Path, dpi: int = 100) -> None:
    fig.savefig(path, dpi=dpi)


def plot_test_accuracy(results: StudyResults):
    """Mean test accuracy with 95% CI bars per activation, in rank order; seeds as dots."""
    labels = results.ranking
    fig = Figure(figsize=(max(5, 1.1 * len(labels)), 4), layout="constrained")
    ax = fig.subplots()
    means = []
    for i, label in enumerate(labels):
        t = results.activations[label].test_acc
        if t.mean is None or t.mean != t.mean:  # no seed finished
            continue
        lo, hi = (t.mean if v is None else v for v in t.ci95)
        means.append(t.mean)
        ax.bar(i, t.mean, color="tab:red" if label == results.baseline else "tab:blue", alpha=0.6)
        ax.errorbar(i, t.mean, yerr=[[t.mean - lo], [hi - t.mean]], color="k", capsize=4)
        ax.plot([i] * len(t.values), t.values, "k.", ms=4)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    if means:
        ax.set_ylim(max(0, min(means) - 0.1), min(1.0, max(means) + 0.05))
    ax.set(ylabel="test accuracy", title=f"{results.name}: test accuracy\nmean and 95% CI, seeds as dots (baseline red)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_val_curves(curves: dict[str, list[tuple[int, float]]]):
    """Validation accuracy per epoch of each activation's best search trial."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for i, (label, points) in enumerate(curves.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, color=TAB20[i % 20])
    ax.set(xlabel="epoch", ylabel="val_acc", title="best trial per activation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_optuna(study, kind: str, label: str):
    """Optuna's own optimization-history or parameter-importance plot, as a figure."""
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    # Optuna's plots switch matplotlib to its own style for the whole process: keep that to this figure.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # "experimental" warnings, on every call
        ax = ovm.plot_optimization_history(study) if kind == "history" else ovm.plot_param_importances(study)
    ax.set_title(f"{label}: {ax.get_title()}")
    plt.close(ax.figure)  # drawn through pyplot: let go of it there (it still saves)
    return ax.figure
