"""The queries Nibabies runs on a precomputed-derivatives folder, for the contract tests.

Mirrored from nipreps/nibabies (read through the code search, not imported: Nibabies is not a
dependency):
- 24.x/25.x, `nibabies/data/io_spec_anat.json` ("queries" -> "baseline"), run by
  `nibabies.utils.derivatives.collect_anatomical_derivatives`: a BIDSLayout on the derivatives folder
  (validate=False, niworkflows' nipreps config; pybids' bids+derivatives config knows the same
  entities used here), each query plus {subject, session}; one file per key is used, several make a
  list that the workflow cannot take.
- 23.x, `Derivatives.populate` in `nibabies/utils/bids.py`: `BIDSLayout(deriv_path, validate=False)`
  (pybids' default config, which knows `space` and `desc` only for a dataset whose
  dataset_description says `"DatasetType": "derivative"`), the four t1w/t2w mask/aseg queries plus
  subject, session and extension; exactly one match, a sidecar with a single `SpatialReference`, and
  the file must have that reference's axis codes, shape and affine (atol 1e-5). 23.x joins
  SpatialReference to the derivatives folder as a relative path; we write a BIDS URI
  (`bids:raw:...` with `DatasetLinks.raw`), resolved here as BIDS defines it (23.x as read
  would look for it under the derivatives folder and not find it; BIBSnet's own dataset-relative
  `sub-X/ses-Y/anat/..._T1w.nii.gz` would not be found there either)."""
import json
import os
from pathlib import Path

NII = [".nii.gz", ".nii"]
NIBABIES_24_BASELINE = {
    "t1w_mask": {"datatype": "anat", "space": "T1w", "desc": "brain", "suffix": "mask", "extension": NII},
    "t2w_mask": {"datatype": "anat", "space": "T2w", "desc": "brain", "suffix": "mask", "extension": NII},
    "t1w_aseg": {"datatype": "anat", "space": "T1w", "desc": "aseg", "suffix": "dseg", "extension": NII},
    "t2w_aseg": {"datatype": "anat", "space": "T2w", "desc": "aseg", "suffix": "dseg", "extension": NII},
    # tissue-class dseg/probseg and preprocessed images: we make none, Nibabies computes them
    "t1w_dseg": {"datatype": "anat", "space": "T1w", "desc": None, "suffix": "dseg", "extension": NII},
    "t2w_dseg": {"datatype": "anat", "space": "T2w", "desc": None, "suffix": "dseg", "extension": NII},
    "t1w_tpms": {"datatype": "anat", "space": "T1w", "label": ["GM", "WM", "CSF"], "suffix": "probseg",
                 "extension": NII},
    "t1w_preproc": {"datatype": "anat", "space": None, "desc": "preproc", "suffix": "T1w", "extension": NII},
    "t2w_preproc": {"datatype": "anat", "space": None, "desc": "preproc", "suffix": "T2w", "extension": NII},
}
NIBABIES_23_SPEC = {k: {kk: v for kk, v in NIBABIES_24_BASELINE[k].items() if kk != "extension"}
                    for k in ("t1w_mask", "t1w_aseg", "t2w_mask", "t2w_aseg")}


def resolve_bids_uri(uri: str, out: Path) -> Path:
    """A BIDS URI (bids:<dataset>:<path>) through dataset_description's DatasetLinks."""
    scheme, dataset, relative = uri.split(":", 2)
    assert scheme == "bids"
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    base = out if dataset == "" else out / links[dataset]    # relative to this dataset (an absolute one still works)
    return Path(os.path.normpath(base / relative))
