#!/usr/bin/env python3
"""Learning curves of training runs from nnU-Net's training logs: the mean pseudo-Dice nnU-Net
prints after every epoch (measured on its validation cases: with `--train-on-all` these are
training images, so it shows how fast a run learns, not how well it generalises) and the
training loss, against iterations, one line per run, in one PNG; a table of both at a few
points is printed.

    python benchmarks/learning_curve.py OUT.png NAME=WORK/nnunet/logs/train_fold0.log [NAME=LOG ...]
        [--iterations-per-epoch 50]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

FLOAT = r"(?:np\.float32\()?([-+0-9.e]+|nan)\)?"


def read_log(text: str) -> dict[str, np.ndarray]:
    """Per epoch: training loss and mean pseudo-Dice over the labels (the epoch lines nnU-Net writes)."""
    losses = [float(v) for v in re.findall(r"train_loss ([-+0-9.e]+)", text)]
    dice = []
    for line in re.findall(r"Pseudo dice \[(.*?)\]", text):
        values = [float(v) for v in re.findall(FLOAT, line)]
        dice.append(float(np.nanmean(values)) if values else float("nan"))
    n = min(len(losses), len(dice))
    return {"loss": np.asarray(losses[:n]), "pseudo_dice": np.asarray(dice[:n])}


def smooth(values: np.ndarray, width: int = 5) -> np.ndarray:
    if len(values) < width:
        return values
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("runs", nargs="+", help="NAME=path/to/train_fold0.log")
    parser.add_argument("--iterations-per-epoch", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bibsnet_trainer.images import write_bytes_atomic
    from bibsnet_trainer.reports.figures import png_bytes, pyplot

    plt = pyplot()
    fig, (ax_dice, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    print(f"{'run':28s} {'epochs':>6s} {'iterations':>10s} {'pseudo-Dice at 25/50/75/100 %':>32s}")
    for spec in args.runs:
        name, path = spec.split("=", 1)
        curve = read_log(Path(path).read_text())
        iterations = (np.arange(len(curve["loss"])) + 1) * args.iterations_per_epoch
        ax_dice.plot(iterations, smooth(curve["pseudo_dice"]), label=name)
        ax_loss.plot(iterations, smooth(curve["loss"]), label=name)
        n = len(curve["pseudo_dice"])
        points = [smooth(curve["pseudo_dice"])[max(0, int(n * q) - 1)] for q in (0.25, 0.5, 0.75, 1.0)] if n else []
        print(f"{name:28s} {n:6d} {n * args.iterations_per_epoch:10d} "
              f"{' / '.join(f'{p:.3f}' for p in points):>32s}")
    ax_dice.set_xlabel("iterations")
    ax_dice.set_ylabel("nnU-Net's pseudo-Dice\n(its validation cases, smoothed)")
    ax_loss.set_xlabel("iterations")
    ax_loss.set_ylabel("training loss (smoothed)")
    ax_dice.legend(fontsize=7)
    fig.tight_layout()
    write_bytes_atomic(args.png, png_bytes(fig, dpi=90))
    print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
