#!/usr/bin/env python3
"""Participant-level prediction at full resolution on the CPU: time and peak memory per subject on
real 1 mm whole-head scans (fs_adults T1.mgz, 256³), for a trained model package and for a
default nnU-Net 3d_fullres network at 1 mm (untrained weights: for timing only), under predictor
settings side by side (tile step, test-time mirroring, threads), and the trained package with its
class probabilities resampled to the 1 mm grid by nnU-Net's default (scipy) and by its torch
resampling (`resample_torch_fornnunet`, which nnU-Net's `_torchres` planners name). Each measurement
runs in its own process, so its peak memory (ru_maxrss) is its own.

    python benchmarks/participant_speed.py MODEL_PACKAGE [--shared ../shared/data] [--subjects 07]
        [--no-default-3d] [--threads 2]

Needs ../shared/data. Prints one row per (model, settings): seconds and peak GiB per subject."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {   # name: (tile_step_size, mirroring)
    "step 0.5, no mirroring": (0.5, False),
    "step 0.75, no mirroring": (0.75, False),
    "step 0.5, mirroring (default for 2D models)": (0.5, True),
}


def measure(model_folder: str, image: str, step: float, mirroring: bool, threads: int) -> dict:
    import nibabel as nib
    import torch

    from bibsnet_trainer.nnunet.predict import Segmenter
    torch.set_num_threads(threads)
    started = time.perf_counter()
    segmenter = Segmenter(model_folder, device="cpu", mirroring=mirroring)
    segmenter.predictor.tile_step_size = step
    loaded = time.perf_counter()
    labels = segmenter.segment([nib.load(image)])
    done = time.perf_counter()
    return {"load_s": loaded - started, "segment_s": done - loaded, "shape": list(labels.shape),
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def default_3d_fullres(package_folder: Path, out: Path) -> Path:
    """nnU-Net's own 3d_fullres plan for this model's labels at 1 mm, with untrained weights."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    manifest = json.loads((package_folder / "manifest.json").read_text())
    source = package_folder / manifest["nnunet_folder"]
    plans = json.loads((source / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config["spacing"] = [1.0, 1.0, 1.0]
    plans["configurations"] = {"3d_fullres": config}
    dataset = json.loads((source / "dataset.json").read_text())
    folder = out / "nnUNetTrainerBibsnet__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    arch = config["architecture"]
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     len(dataset["channel_names"]), len(dataset["labels"]), deep_supervision=False)
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainerBibsnet",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1)},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def with_probability_resampling(folder: Path, out: Path, how: str) -> Path:
    """A copy of a trained-model folder whose plans resample the class probabilities with nnU-Net's
    default scipy function or with its torch one (the checkpoints are linked, not copied)."""
    target = out / how / folder.name
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.name != "plans.json":
            (target / item.name).symlink_to(item.resolve())
    plans = json.loads((folder / "plans.json").read_text())
    for name, config in plans["configurations"].items():
        if how == "torch":
            config["resampling_fn_probabilities"] = "resample_torch_fornnunet"
            config["resampling_fn_probabilities_kwargs"] = {"is_seg": False, "force_separate_z": None,
                                                            "memefficient_seg_resampling": False}
        else:
            config["resampling_fn_probabilities"] = "resample_data_or_seg_to_shape"
            config["resampling_fn_probabilities_kwargs"] = {"is_seg": False, "order": 1, "order_z": 0,
                                                            "force_separate_z": None}
    (target / "plans.json").write_text(json.dumps(plans, indent=1))
    return target


def t1w_nifti(shared: Path, subject: str, out: Path) -> Path:
    import nibabel as nib
    import numpy as np
    path = out / f"sub-{subject}_T1w.nii.gz"
    if not path.exists():
        t1 = nib.load(shared / "dev_real" / "fs_adults" / f"sub-{subject}" / "T1.mgz")
        nib.save(nib.Nifti1Image(np.asarray(t1.dataobj, dtype=np.float32), t1.affine), path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, nargs="?")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--subjects", nargs="+", default=["07"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-default-3d", action="store_true")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, image, step, mirroring, threads = args.child
        print(json.dumps(measure(folder, image, float(step), mirroring == "1", int(threads))))
        return 0
    if args.package is None:
        parser.error("MODEL_PACKAGE is required")
    from bibsnet_trainer.models.package import open_package
    tmp = Path(tempfile.mkdtemp(prefix="participant_speed_"))
    package, manifest = open_package(args.package, tmp / "package")
    trained = package / manifest["nnunet_folder"]
    models = {f"trained package ({manifest.get('training_spacing_mm')} mm)": trained}
    for how in ("scipy", "torch"):
        models[f"trained, probabilities resampled by {how}"] = with_probability_resampling(trained, tmp / "resampling",
                                                                                          how)
    if not args.no_default_3d:
        models["nnU-Net default 3d_fullres at 1 mm (untrained)"] = default_3d_fullres(package, tmp / "default3d")
    print(f"CPU threads {args.threads}; inputs: fs_adults 1 mm whole-head T1w (256³), real scans")
    print(f"{'model':52s} {'settings':34s} {'subject':>7s} {'load s':>7s} {'segment s':>9s} {'peak GiB':>8s}")
    for name, folder in models.items():
        # the untrained 3d_fullres network is there for its cost only: one setting (its default)
        # the resampling variants: in the default setting (mirroring) only
        chosen = args.settings if name.startswith("trained package") else args.settings[-1:] \
            if name.startswith("trained") else args.settings[:1]
        for setting in chosen:
            step, mirroring = SETTINGS[setting]
            for subject in args.subjects:
                image = t1w_nifti(args.shared, subject, tmp)
                child = subprocess.run([sys.executable, __file__, "--child", str(folder), str(image), str(step),
                                        "1" if mirroring else "0", str(args.threads)],
                                       capture_output=True, text=True)
                if child.returncode != 0:
                    print(f"{name:52s} {setting:34s} {subject:>7s} failed: {child.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(child.stdout.strip().splitlines()[-1])
                print(f"{name:52s} {setting:34s} {subject:>7s} {r['load_s']:7.1f} {r['segment_s']:9.1f} "
                      f"{r['peak_gib']:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
