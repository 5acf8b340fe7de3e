#!/usr/bin/env python3
"""Regenerate examples/data from ../shared/data (run once by maintainers; the output is committed).

- SynthSeg training label maps 01-05 (Apache-2.0, BBillot/SynthSeg): nearest-neighbour resampled
  to 3 mm, cropped to the head with a 2-voxel margin, stored as int16.
- nii2mesh bet.nii.gz (BSD-2-Clause, neurolabusc/nii2mesh): a real skull-stripped adult T1w,
  resampled to 2 mm (linear), stored as uint8.
"""
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "data"


def crop(img, margin=2):
    data = np.asanyarray(img.dataobj)
    nz = np.argwhere(data > 0)
    lo = np.maximum(nz.min(0) - margin, 0)
    hi = np.minimum(nz.max(0) + margin + 1, data.shape)
    return img.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]


def main():
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    for k in range(1, 6):
        src = nib.load(SHARED / "synthseg" / "training_label_maps" / f"training_seg_{k:02d}.nii.gz")
        labels = nib.Nifti1Image(np.asanyarray(src.dataobj).astype(np.int16), src.affine)
        small = crop(resample_to_output(labels, 3.0, order=0))
        img = nib.Nifti1Image(np.asanyarray(small.dataobj).astype(np.int16), small.affine)
        img.set_data_dtype(np.int16)
        nib.save(img, out / f"synthseg_{k:02d}_3mm_labels.nii.gz")
    bet = nib.load(SHARED / "dev_real" / "nii2mesh" / "bet.nii.gz")
    small = resample_to_output(nib.Nifti1Image(bet.get_fdata(), bet.affine), 2.0, order=1)
    img = nib.Nifti1Image(np.clip(small.get_fdata(), 0, 255).astype(np.uint8), small.affine)
    img.set_data_dtype(np.uint8)
    nib.save(img, out / "nii2mesh_bet_2mm_T1w.nii.gz")


if __name__ == "__main__":
    main()
