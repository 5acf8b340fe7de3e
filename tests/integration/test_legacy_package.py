"""A model package written by an earlier version still verifies and segments.

`data/package_format_v1/` holds a tiny package (a 3-stage 2D network, 4-16 features, two training
iterations on the phantom data of `phantoms.py`) in the first package format: digests as a
`{path: sha256}` mapping, the configuration keys and trainer class names of that format. Its quality is
irrelevant; what matters is that the files, the manifest (old digest layout, old configuration
keys) and nnU-Net's trainer class names still load."""
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from bibsnet_trainer.cli.run import main
from bibsnet_trainer.cli.models import main as models_main
from conftest import TESTS
from phantoms import write_bids

LEGACY = TESTS / "data" / "package_format_v1" / "model_seg_aseg_t1w_nnunet_r20261202.zip"


def test_legacy_package_verifies_and_segments(tmp_path, capsys):
    with zipfile.ZipFile(LEGACY) as archive:
        manifest = json.loads(archive.read("model_seg_aseg_t1w_nnunet/manifest.json"))
    assert manifest["release"] == "r20261202" and "nnUNetTrainerBibsnet__" in manifest["nnunet_folder"]
    assert models_main(["verify", str(LEGACY)]) == 0, capsys.readouterr().err

    bids = write_bids(tmp_path / "bids", {"07": "image"})
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--model", str(LEGACY),
                 "--device", "cpu", "--nprocs", "1"])
    assert code == 0, capsys.readouterr().err
    image = nib.load(bids / "sub-07" / "anat" / "sub-07_T1w.nii.gz")
    dseg = nib.load(out / "sub-07" / "anat" / "sub-07_space-T1w_desc-aseg_dseg.nii.gz")
    assert dseg.shape == image.shape and np.allclose(dseg.affine, image.affine)
    mask = nib.load(out / "sub-07" / "anat" / "sub-07_space-T1w_desc-brain_mask.nii.gz")
    assert mask.shape == image.shape
    codes = set(np.unique(np.asarray(dseg.dataobj)).tolist())
    assert codes <= {0} | {e["freesurfer"] for e in manifest["labels"]}


def test_participant_level_reads_each_input_file_once(tmp_path, monkeypatch, capsys):
    """Validation reads a session's image and reference label map; segmentation and QC (region
    volumes, the Dice report against the reference) take them from there."""
    from collections import Counter
    bids = write_bids(tmp_path / "bids", {"07": "both"})
    reads, load = Counter(), nib.load

    def counted(path, *args, **kwargs):
        if str(path).startswith(str(bids)):
            reads[Path(path).name] += 1
        return load(path, *args, **kwargs)
    monkeypatch.setattr(nib, "load", counted)
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--model", str(LEGACY),
                 "--device", "cpu", "--nprocs", "1"])
    assert code == 0, capsys.readouterr().err
    assert (out / "reports" / "sub-07_desc-dice_report.html").is_file()      # the reference was used
    assert reads == {"sub-07_T1w.nii.gz": 1, "sub-07_space-T1w_desc-aseg_dseg.nii.gz": 1}, reads
