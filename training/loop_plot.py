"""``qc bench loop --plot FILE.png``: the loop's test-set rates against the number of labels.

Solid lines are the uncertainty-driven rounds, dashed lines the random baseline at
the same label counts; one colour per rate. With ``--ceiling``, dotted horizontal lines
mark the fully labelled model at its best band chosen with hindsight. matplotlib (Agg
backend, no display) is imported only here, only when a plot is asked for.
"""
from __future__ import annotations

from pathlib import Path

from training.errors import DatasetError

SERIES = (("review_rate", "review rate"), ("escape_rate", "escape rate"), ("false_reject_rate", "false reject rate"),
          ("artefact_false_reject_rate", "artefact false reject rate"), ("hitl_error", "1 - hitl accuracy"))


def _value(row: dict, key: str):
    if key == "hitl_error":
        return None if row.get("hitl_accuracy") is None else 1.0 - row["hitl_accuracy"]
    return row.get(key)


def plot(doc: dict, path: Path) -> Path:
    """Draw ``doc`` (the benchmark's JSON document) into ``path`` as PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise DatasetError("--plot needs matplotlib (pip install matplotlib)") from exc
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (key, label), colour in zip(SERIES, colours):
        for rows, style, suffix in ((doc["rounds"], "-", ""), (doc["random_baseline"], "--", " (random)")):
            pts = [(r["labels"], _value(r, key)) for r in rows if _value(r, key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, style, color=colour, marker="o" if style == "-" else "x", label=label + suffix)
        best = (doc.get("ceilings") or [{}])[0].get("best_band")
        if best is not None and _value(best, key) is not None:
            ax.axhline(_value(best, key), color=colour, linestyle=":", linewidth=1.2,
                       label=f"{label}, ceiling (hindsight)")
    for r in doc["rounds"]:
        ax.annotate(f"r{r['round']}", (r["labels"], 1.0), xycoords=("data", "axes fraction"), ha="center",
                    va="bottom", fontsize=8)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(bottom=0.0)  # rates: symlog would otherwise mirror a decade below zero
    ax.set_xlabel("labels (seed set + oracle verdicts)")
    ax.set_ylabel("rate on the test set")
    d = doc.get("data", {})
    ax.set_title(f"learning loop on {Path(str(d.get('path', ''))).name or 'data'}: "
                 f"{d.get('test', '?')} test parts; solid = uncertainty, dashed = random", fontsize=10, pad=16)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the lines stay visible
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
