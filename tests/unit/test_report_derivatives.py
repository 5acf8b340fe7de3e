import json
import re

from bibsnet_trainer.bids.derivatives import output_paths, write_dataset_level
from bibsnet_trainer.labels import LabelTable
from bibsnet_trainer.evaluation.dice_report import write_dice_report
from bibsnet_trainer.evaluation.summary import Reference


def test_synthetic_report_is_labelled(tmp_path):
    paths = write_dice_report(tmp_path, "r", {"c1": {2: 0.97, 41: 0.85}, "c2": {2: 0.91, 41: float("nan")}},
                              evaluated_on=Reference.SYNTHETIC, context={"model": "m"})
    content = json.loads(paths["json"].read_text())
    assert content["synthetic"] is True
    by_label = {row["label"]: row for row in content["labels"]}
    assert by_label[2]["mean_dice"] == 0.94 and by_label[2]["grade"] == "good"
    assert by_label[41]["n"] == 1 and by_label[41]["grade"] == "pass"
    html = paths["html"].read_text()
    assert "Synthetic only" in html and "Left-Cerebral-White-Matter" in html
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert "c2\t41\tRight-Cerebral-White-Matter\tn/a\tabsent" in paths["tsv"].read_text()


def test_label_colours_are_freesurfers_and_unknown_codes_get_distinct_stable_ones():
    from bibsnet_trainer.labels import label_color
    assert label_color(3) == label_color(42) == "#cd3e4e"            # cortex, FreeSurferColorLUT
    assert label_color(17) == "#dcd814" and label_color(4) == "#781286"
    unknown = [label_color(code) for code in (600, 601, 602, 1000)]
    assert len(set(unknown)) == 4 and all(re.fullmatch("#[0-9a-f]{6}", c) for c in unknown)
    assert unknown[0] == label_color(600)


def test_output_names_follow_nibabies(tmp_path):
    paths = output_paths(tmp_path, "01", "2wk", "T2w")
    assert paths["dseg"] == tmp_path / "sub-01/ses-2wk/anat/sub-01_ses-2wk_space-T2w_desc-aseg_dseg.nii.gz"
    assert paths["mask"].name == "sub-01_ses-2wk_space-T2w_desc-brain_mask.nii.gz"
    write_dataset_level(tmp_path, tmp_path / "bids", LabelTable.from_codes([0, 172]))
    description = json.loads((tmp_path / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["SourceDatasets"]
    assert (tmp_path / "desc-aseg_dseg.tsv").read_text() == "index\tname\tcolor\n0\tbackground\t#000000\n172\tVermis\t#7764b0\n"


def test_bids_uri_of_a_linked_file_names_its_place_in_the_dataset(tmp_path):
    """DataLad and git-annex datasets hold links into their annex: the URI is the file's path in the
    dataset, not the annex file it points to (that raised ValueError and failed every session)."""
    from bibsnet_trainer.bids.derivatives import bids_uri

    annex = tmp_path / "annex" / "MD5E-s123--abc.nii.gz"
    annex.parent.mkdir()
    annex.write_bytes(b"x")
    anat = tmp_path / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_T1w.nii.gz").symlink_to(annex)
    assert bids_uri(tmp_path / "bids", anat / "sub-01_T1w.nii.gz") == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    (tmp_path / "link").symlink_to(tmp_path / "bids")      # the dataset itself reached through a link
    assert bids_uri(tmp_path / "link", tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz",
                    "x") == "bids:x:sub-01/anat/sub-01_T1w.nii.gz"
