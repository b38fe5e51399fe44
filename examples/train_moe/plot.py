"""Loss curves and a summary of train.py runs:

  plot.py RUNS_DIR   (every RUNS_DIR/<run>/log.json)

Writes RUNS_DIR/loss_curves.png (held-out loss against step, and the
training loss smoothed) and RUNS_DIR/summary.json (per run: final held-out
loss, with compression and without, wire ratio, wall time; and each
configuration's mean over seeds against the uncompressed runs' mean, and
each run against the uncompressed run of its seed).
"""

import collections
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(runs_dir):
    runs = {}
    for name in sorted(os.listdir(runs_dir)):
        path = os.path.join(runs_dir, name, "log.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[name] = json.load(f)
    if not runs:
        print(f"plot: no runs under {runs_dir}", file=sys.stderr)
        return 1
    summary = {"runs": {}, "configurations": {}}
    groups = collections.defaultdict(list)
    for name, log in runs.items():
        final = log["heldout"][-1]
        summary["runs"][name] = {"heldout": final["loss"],
                                 "heldout_uncompressed": final["loss_uncompressed"],
                                 "steps": final["step"], "wire_ratio": log["wire_ratio"],
                                 "wall_s": log["wall_s"]}
        groups[re.sub(r"_seed\d+$", "", name)].append(final["loss"])
        seed = re.search(r"_seed(\d+)$", name)
        base_run = runs.get(f"raw_seed{seed.group(1)}") if seed else None
        if base_run is not None and name != f"raw_seed{seed.group(1)}":
            summary["runs"][name]["vs_raw_same_seed"] = (
                final["loss"] / base_run["heldout"][-1]["loss"] - 1)
    base = groups.get("raw")
    for config, losses in sorted(groups.items()):
        mean = sum(losses) / len(losses)
        entry = {"seeds": len(losses), "heldout_mean": mean,
                 "heldout_spread": max(losses) - min(losses)}
        if base:
            entry["vs_raw"] = mean / (sum(base) / len(base)) - 1
        summary["configurations"][config] = entry
    with open(os.path.join(runs_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)

    fig, (ax_h, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, log in runs.items():
        steps = [e["step"] for e in log["heldout"]]
        style = "-" if "raw" in name and "rho" not in name else "--"
        ax_h.plot(steps, [e["loss"] for e in log["heldout"]], style, label=name)
        train = log["train"]
        k = 20
        smooth = [sum(v for _, v in train[max(0, i - k + 1):i + 1]) / min(k, i + 1)
                  for i in range(len(train))]
        ax_t.plot([s for s, _ in train], smooth, style, label=name)
    ax_h.set(title="held-out loss (each run's own all-to-all)", xlabel="step",
             ylabel="cross-entropy (nats/byte)")
    ax_t.set(title="training loss (mean of 20 steps)", xlabel="step")
    ax_h.legend(fontsize=7)
    for ax in (ax_h, ax_t):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(runs_dir, "loss_curves.png"), dpi=110)
    print(json.dumps(summary["configurations"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs"))
