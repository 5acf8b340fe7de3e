"""What produced a report: the app, the command line, the date, the device, the libraries; and a
methods paragraph with citations that users can paste into a paper (as fMRIPrep's boilerplate)."""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import shlex
import sys

from .. import __version__
from ..config import RunConfig, as_json

# the libraries whose versions a report and a model package record (one list for both)
LIBRARIES = ("torch", "torchvision", "nnunetv2", "dynamic-network-architectures", "batchgeneratorsv2", "cornucopia",
             "torch-interpol", "nibabel", "numpy", "scipy", "scikit-learn", "SimpleITK", "pybids", "nipype",
             "matplotlib")

CITATIONS = (
    "Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH (2021). nnU-Net: a self-configuring method for "
    "deep learning-based biomedical image segmentation. Nature Methods 18:203-211.",
    "Billot B, Greve DN, Puonti O, Thielscher A, Van Leemput K, Fischl B, Dalca AV, Iglesias JE (2023). SynthSeg: "
    "segmentation of brain MRI scans of any contrast and resolution without retraining. Medical Image Analysis "
    "86:102789.",
    "Balbastre Y et al. cornucopia: a PyTorch library of MRI augmentations, https://github.com/balbasty/cornucopia.",
    "Hendrickson TJ et al. (2023). BIBSNet: a deep learning baby image brain segmentation network for MRI scans. "
    "bioRxiv 2023.03.22.533696.",
)


def library_versions(names=LIBRARIES) -> dict[str, str]:
    """Python's, the app's and each installed library's version (missing ones left out)."""
    from importlib.metadata import PackageNotFoundError, version
    found = {"python": platform.python_version(), "bibsnet-trainer": __version__}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _cpu_model() -> str | None:
    """The CPU's model name, and whether it has bfloat16 kernels (AVX512-BF16 or AMX), which make
    the cpu preset's training about 1.6 times faster: the same minutes give other iteration counts."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and model is None:
                    model = " ".join(line.split(":", 1)[1].split())
                elif line.startswith("flags") and flags is None:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or None
    if model and flags is not None:
        model += ", bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else ", no bfloat16"
    return model


def machine(device: str = "cpu") -> str:
    """The machine in words: the GPU when the device is one, the CPU's cores and model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = _cpu_model()
    cpu = f"{cores} CPU cores" + (f" ({model})" if model else "") + f", {platform.machine()}"
    if device.startswith("cuda"):
        try:
            import torch
            return f"GPU {torch.cuda.get_device_name(torch.device(device))}; {cpu}"
        except Exception:   # no CUDA here: the GPU's name is unknown, the rest is not
            return f"GPU ({device}); {cpu}"
    return cpu


def trained_on(training: dict | None) -> str | None:
    """What a model was trained on, in words, from its training summary (`training_data` in its manifest)."""
    if not training:
        return None
    real = set(training.get("real_train_subjects") or [])
    if int(training.get("folds") or 1) > 1:    # fold 0's validation subjects train in the other folds
        real |= set(training.get("real_validation_subjects") or [])
    real = len(real)
    synthetic = int(training.get("synthetic_images") or 0)
    parts = ([f"the real images of {real} subject{'s' if real != 1 else ''}"] if real else []) + (
        [f"{synthetic} SynthSeg-style synthetic images (Billot et al., 2023) generated with cornucopia"]
        if synthetic else [])
    return " and ".join(parts) or None


def provenance(config: RunConfig | None = None, model: dict | None = None, training: dict | None = None) -> dict:
    """What produced a report; `config` is the run's configuration, embedded whole; `training` the
    model's training summary (its manifest's `training_data`), for what the model was trained on."""
    device = config.execution.device if config else None
    return {"app": f"bibsnet-trainer {__version__}", "command": shlex.join(sys.argv),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": device, "host": f"{platform.machine()}, {platform.system()}",
            "machine": machine(device or "cpu"), "model": model, "trained_on": trained_on(training),
            "versions": library_versions(), "configuration": as_json(config) if config else None}


def methods_text(prov: dict) -> str:
    model = prov.get("model") or {}
    name = " ".join(str(model.get(k, "")) for k in ("Name", "Release", "name", "release")).strip()
    what = prov.get("trained_on") or "labelled images"
    return (f"Brain segmentations were computed with {prov['app']} (a BIDS App), "
            + (f"model {name}, " if name else "")
            + f"an nnU-Net v2 network (Isensee et al., 2021) trained on {what}, "
            "following BIBSNet (Hendrickson et al., 2023). "
            "Images were reoriented to RAS for the network and results written back on each input's own grid; "
            "the brain mask is the union of all labels with holes filled and its largest connected component.")


def provenance_html(prov: dict | None) -> str:
    if not prov:
        return ""
    esc = html.escape
    rows = "".join(f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in prov.items()
                   if k not in ("versions", "configuration") and v is not None)
    if prov.get("configuration"):
        rows += ("<li><details><summary><b>configuration</b> (as recorded in the work dir)</summary><pre>"
                 f"{esc(json.dumps(prov['configuration'], indent=1))}</pre></details></li>")
    versions = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
    references = "".join(f"<li>{esc(c)}</li>" for c in CITATIONS)
    return (f"<h2>Provenance</h2><ul>{rows}<li><b>versions</b>: {esc(versions)}</li></ul>"
            f"<h2>Methods</h2><p>{esc(methods_text(prov))}</p><ol>{references}</ol>")
