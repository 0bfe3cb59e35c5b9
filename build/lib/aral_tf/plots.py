"""Accuracy against labels as a PNG (paper Fig. 3): a run's own curve, or a comparison's methods.

matplotlib (Agg backend) is imported when a plot is drawn, not with this module.
"""

import io

import numpy as np

from aral_tf.methods import FULL

PLOT_FILE = "accuracy_vs_labels.png"
COLORS = {"aral": "tab:red", "vaal": "tab:blue", "random": "tab:gray", "entropy": "tab:green",
          "bald": "tab:purple", "coreset": "tab:orange", "full": "black", "aral_random": "tab:pink",
          "aral_no_encoder": "tab:brown", "aral_no_cotrain": "tab:olive"}


def run_rows(method, records):
    """The rows `accuracy_png` draws for one run's records (results.jsonl): one seed, no spread."""
    return [{"method": method, "num_labeled": record["num_labeled"], "seeds": 1,
             "mean_accuracy": record["test_accuracy"], "std_accuracy": 0.0} for record in records]


def accuracy_png(rows, methods, title):
    """PNG bytes: test accuracy vs labels, a line and a ±1 std band per method, `full` as a dashed line.

    `rows` hold method, num_labeled, mean_accuracy and std_accuracy (fractions); `methods` gives the order.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    figure, axes = pyplot.subplots(figsize=(6.4, 4.8))
    curve_labels = sorted({row["num_labeled"] for row in rows if row["method"] != FULL})
    for method in methods:
        points = [row for row in rows if row["method"] == method]
        if not points:
            continue
        mean = 100 * np.array([row["mean_accuracy"] for row in points])
        std = 100 * np.array([row["std_accuracy"] for row in points])
        color = COLORS.get(method)
        if method == FULL:
            axes.axhline(mean[0], color=color, linestyle="--",
                         label=f"{method} ({points[0]['num_labeled']} labels)")
            if curve_labels:
                axes.axhspan(mean[0] - std[0], mean[0] + std[0], color=color, alpha=0.08)
            continue
        labels = np.array([row["num_labeled"] for row in points])
        axes.plot(labels, mean, marker="o", markersize=3, color=color, label=method)
        axes.fill_between(labels, mean - std, mean + std, color=color, alpha=0.15)
    axes.set_xlabel("number of labeled images")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return buffer.getvalue()
