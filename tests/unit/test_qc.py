"""Region volumes, QC flags, the group QC summary and the visual QC report (no model needed)."""
import json
import re

import nibabel as nib
import numpy as np
import pytest

from bibsnet_trainer.participant import qc
from bibsnet_trainer.participant.mask import brain_mask
from bibsnet_trainer.reports.figures import PLANES, outline
from bibsnet_trainer.participant.qc_report import label_colours, mosaic_png, qc_html, write_qc_summary
from bibsnet_trainer.volumes import SIDECAR, region_volumes, volumes_by_code, volumes_tsv, voxel_volume_mm3
from phantoms import phantom_labels, phantom_t1w, ras_affine, write_description


def _status(flags, name):
    return next(f for f in flags if f.name == name).status


# ----------------------------------------------------------------------------- volumes

def test_region_volumes_count_voxels_times_voxel_volume():
    labels = np.zeros((4, 4, 4), np.int32)
    labels[0, :2, :] = 2          # 8 voxels
    labels[3, 0, 0] = 172         # vermis, 1 voxel
    affine = np.diag([1.0, 2.0, 1.5, 1.0])
    rows = region_volumes(labels, voxel_volume_mm3(affine), codes=[0, 2, 41, 172])
    assert [r["index"] for r in rows] == [2, 41, 172]        # table order, background left out
    by_code = {r["index"]: r for r in rows}
    assert by_code[2] == {"index": 2, "name": "Left-Cerebral-White-Matter", "volume_mm3": 24.0, "voxels": 8}
    assert by_code[41]["voxels"] == 0 and by_code[41]["volume_mm3"] == 0.0   # absent label kept: same rows per subject
    assert by_code[172]["name"] == "Vermis" and by_code[172]["volume_mm3"] == 3.0
    assert volumes_tsv(rows).splitlines()[0] == "index\tname\tvolume_mm3\tvoxels"
    assert "172\tVermis\t3.0\t1" in volumes_tsv(rows)
    assert SIDECAR["volume_mm3"]["Units"] == "mm^3" and set(SIDECAR) == {"index", "name", "volume_mm3", "voxels"}


def test_voxel_volume_ignores_rotation_and_flips():
    rotation = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 1.0, 1.2])
    assert voxel_volume_mm3(affine) == pytest.approx(0.96)


def test_codes_outside_the_table_are_reported_not_dropped():
    labels = np.array([[[0, 2], [99, 99]]])
    rows = region_volumes(labels, 1.0, codes=[0, 2])
    assert [(r["index"], r["name"], r["voxels"]) for r in rows] == [(2, "Left-Cerebral-White-Matter", 1),
                                                                     (99, "Label-99", 2)]


# ----------------------------------------------------------------------------- brain volume by age

@pytest.mark.parametrize("age, volume, status", [
    (0.5, 350, qc.OK), (3.0, 560, qc.OK), (3.0, 1000, qc.WARN), (3.0, 1200, qc.FAIL), (3.0, 100, qc.FAIL),
    (12.0, 900, qc.OK), (24.0, 1000, qc.OK), (360.0, 1280, qc.OK), (360.0, 700, qc.WARN), (360.0, 500, qc.FAIL),
    (360.0, 3000, qc.FAIL), (None, 1280, qc.OK), (None, 350, qc.OK), (None, 120, qc.FAIL)])
def test_brain_volume_against_age(age, volume, status):
    flag = qc.brain_volume_flag({2: volume * 1000.0}, age)
    assert flag.status == status, flag
    assert flag.value == volume


def test_brain_volume_leaves_out_csf_and_ventricles():
    volumes = {2: 400_000.0, 3: 300_000.0, 24: 500_000.0, 4: 50_000.0, 43: 50_000.0}
    assert qc.brain_volume_cm3(volumes) == 700.0


def test_expected_range_grows_with_age_and_says_so():
    nominal = [qc.expected_brain_volume(a)["nominal_cm3"] for a in (0, 3, 6, 12, 24, 72, 216, 900)]
    assert nominal == sorted(nominal) and nominal[0] == 340 and nominal[-1] == 1200
    assert "age unknown" in qc.brain_volume_flag({2: 1e6}, None).expected


# ----------------------------------------------------------------------------- left / right

def test_hemisphere_ratio_bands():
    assert qc.hemisphere_ratio_flag({2: 100.0, 41: 100.0, 16: 30.0}).status == qc.OK
    assert qc.hemisphere_ratio_flag({2: 115.0, 41: 100.0}).status == qc.WARN
    assert qc.hemisphere_ratio_flag({2: 200.0, 41: 100.0}).status == qc.FAIL
    flag = qc.hemisphere_ratio_flag({2: 100.0, 16: 10.0})
    assert flag.status == qc.FAIL and flag.value is None


@pytest.mark.parametrize("ornt", [[[0, 1], [1, 1], [2, 1]],      # RAS
                                  [[0, -1], [2, -1], [1, 1]],    # LIA, as FreeSurfer stores it
                                  [[1, -1], [0, 1], [2, -1]]])   # axes swapped and flipped
def test_left_right_side_is_read_in_world_space_whatever_the_voxel_order(ornt):
    labels = phantom_labels()
    img = nib.Nifti1Image(labels.astype(np.int16), ras_affine()).as_reoriented(np.array(ornt))
    data = np.asarray(img.dataobj)
    assert qc.left_right_side_flag(data, img.affine).status == qc.OK
    swapped = np.where(data == 2, 41, np.where(data == 41, 2, data))
    swapped = np.where(swapped == 3, 42, np.where(data == 42, 3, swapped))
    flag = qc.left_right_side_flag(swapped, img.affine)
    assert flag.status == qc.FAIL and "swapped" in flag.detail


# ----------------------------------------------------------------------------- connectivity, Dice

def test_mask_flags():
    labels = np.zeros((20, 20, 20), np.int32)
    labels[2:10, 2:10, 2:10] = 2
    mask = brain_mask(labels)
    flags = qc.mask_flags(mask, labels)
    assert [f.status for f in flags] == [qc.OK, qc.OK, qc.OK]
    labels[15:19, 15:19, 15:19] = 41               # an island: 64 of 576 voxels, dropped by the mask
    flags = qc.mask_flags(brain_mask(labels), labels)
    assert _status(flags, "labels_in_mask_fraction") == qc.FAIL
    two = mask.copy()
    two[18, 18, 18] = 1
    flags = qc.mask_flags(two, labels)
    assert _status(flags, "mask_components") == qc.WARN and _status(flags, "mask_largest_fraction") == qc.OK
    assert qc.mask_flags(np.zeros_like(mask), labels)[0].status == qc.FAIL


def test_dice_flag_pass_mark_and_training_note():
    assert qc.dice_flag({2: 0.9, 41: 0.8, 16: float("nan")}).status == qc.OK
    flag = qc.dice_flag({2: 0.9, 41: 0.6}, seen_in_training=True)
    assert flag.status == qc.FAIL and flag.value == 0.75
    assert "Right-Cerebral-White-Matter" in flag.detail and "not an independent test" in flag.detail


def test_worst_status():
    assert qc.worst([qc.OK, qc.WARN, qc.OK]) == qc.WARN and qc.worst([qc.WARN, qc.FAIL]) == qc.FAIL
    assert qc.worst([]) == qc.OK


# ----------------------------------------------------------------------------- group summary

def _report(subject, session, flags, age=None):
    return {"key": f"sub-{subject}", "subject": subject, "session": session, "age_months": age,
            "status": qc.worst(f.status for f in flags), "flags": [f.as_dict() for f in flags]}


def test_summary_rebuilt_from_the_per_session_reports(tmp_path):
    a = [qc.Flag("brain_volume_cm3", 500.0, "x", qc.OK), qc.Flag("hemisphere_ratio", 1.0, "x", qc.OK)]
    b = [qc.Flag("brain_volume_cm3", 90.0, "x", qc.FAIL), qc.Flag("dice_mean", 0.91, "x", qc.OK)]
    (tmp_path / "sub-02_ses-1mo_desc-qc_report.json").write_text(json.dumps(_report("02", "1mo", b, 1.0)))
    (tmp_path / "sub-01_desc-qc_report.json").write_text(json.dumps(_report("01", None, a)))
    (tmp_path / "sub-03_desc-qc_report.json").write_text("{not json")
    tsv = write_qc_summary(tmp_path)
    lines = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert lines[0] == ["participant_id", "session_id", "age_months", "qc_status", "brain_volume_cm3",
                        "brain_volume_cm3_status", "hemisphere_ratio", "hemisphere_ratio_status",
                        "dice_mean", "dice_mean_status"]
    assert lines[1] == ["sub-01", "n/a", "n/a", "ok", "500.0", "ok", "1.0", "ok", "n/a", "n/a"]
    assert lines[2] == ["sub-02", "ses-1mo", "1.0", "fail", "90.0", "fail", "n/a", "n/a", "0.91", "ok"]
    sidecar = json.loads(tsv.with_suffix(".json").read_text())
    assert set(sidecar) == set(lines[0]) and sidecar["age_months"]["Units"] == "months"
    (tmp_path / "sub-02_ses-1mo_desc-qc_report.json").unlink()
    assert len(write_qc_summary(tmp_path).read_text().splitlines()) == 2       # rebuilt, not appended


# ----------------------------------------------------------------------------- visual report

def test_outline_marks_label_borders_only():
    plane = np.zeros((6, 6), np.int32)
    plane[1:5, 1:5] = 2
    edge = outline(plane)
    assert edge[1, 1] and edge[1, 3] and not edge[2, 2] and not edge[0, 0]


def test_pairs_share_a_shade_left_warm_right_cool():
    colours = label_colours()
    left, right = np.array(colours[2]), np.array(colours[41])
    assert left[0] > left[2] and right[2] > right[0]          # warm (red > blue) and cool (blue > red)
    assert colours[172] != colours[2] and len({colours[c] for c in (2, 3, 4, 10)}) == 4


def _warm_and_cool_columns(png_path, rows):
    import matplotlib.image as mpimg
    rgb = mpimg.imread(png_path)[..., :3]
    height = rgb.shape[0]
    band = rgb[int(height * rows[0]):int(height * rows[1])]
    red, green, blue = band[..., 0], band[..., 1], band[..., 2]
    warm = (red > 0.85) & (blue < 0.35) & (green < 0.8)
    cool = (blue > 0.85) & (red < 0.35)
    return np.nonzero(warm)[1], np.nonzero(cool)[1]


def test_mosaic_shows_left_on_the_left_in_any_storage_order(tmp_path):
    """Neurological display: in the axial and coronal rows, Left-* (warm) outlines lie left of Right-*
    (cool) ones, however the image is stored; the PNG is a real picture with three plane rows."""
    labels = phantom_labels()
    image = phantom_t1w(labels)
    for name, ornt in (("ras", [[0, 1], [1, 1], [2, 1]]), ("lps", [[0, -1], [1, -1], [2, 1]])):
        img = nib.Nifti1Image(image, ras_affine()).as_reoriented(np.array(ornt))
        seg = nib.Nifti1Image(labels.astype(np.int16), ras_affine()).as_reoriented(np.array(ornt))
        png = mosaic_png(img, seg, kind="labels", title=name, n_slices=5)
        assert png[:4] == b"\x89PNG"
        path = tmp_path / f"{name}.png"
        path.write_bytes(png)
        warm, cool = _warm_and_cool_columns(path, (0.42, 0.99))    # coronal and axial rows
        assert len(warm) > 50 and len(cool) > 50
        # per panel, warm columns sit left of cool ones; with 5 mirrored panels the means follow
        assert warm.mean() < cool.mean(), name
    assert [p.name for p in PLANES] == ["sagittal", "coronal", "axial"]     # the rows, top to bottom


def test_mask_mosaic_and_html(tmp_path):
    labels = phantom_labels()
    img = nib.Nifti1Image(phantom_t1w(labels), ras_affine())
    mask = nib.Nifti1Image(brain_mask(labels), ras_affine())
    png = mosaic_png(img, mask, kind="mask", title="mask", n_slices=3)
    flags = [qc.Flag("brain_volume_cm3", 120.0, "238-1680", qc.FAIL, "d"), qc.Flag("hemisphere_ratio", 1.0, "e", qc.OK)]
    content = {**_report("01", None, flags), "volumes": region_volumes(labels, 27.0)}
    page = qc_html(content, [("Brain mask", png)])
    assert page.count("<img") == 1 and "QC status: <b>fail</b>" in page
    assert "brain_volume_cm3" in page and "Left-Cerebral-White-Matter" in page
    # the volumes table is the figure's colour legend: each structure's swatch in its outline colour
    colours = label_colours()
    for row in content["volumes"]:
        red, green, blue = (round(255 * c) for c in colours.get(row["index"], (1.0, 1.0, 1.0)))
        assert re.search(rf"rgb\({red},{green},{blue}\)'[^<]*</span></td><td>{row['index']}</td>", page), row


def test_session_flags_on_a_phantom():
    labels = phantom_labels()
    affine = ras_affine()
    volumes = volumes_by_code(region_volumes(labels, voxel_volume_mm3(affine)))
    codes = sorted(int(c) for c in np.unique(labels))
    flags = qc.session_flags(labels, brain_mask(labels), phantom_t1w(labels), affine, volumes, None, {2: 1.0}, model_codes=codes,
                             dice_summary={"mean_dice": 0.91, "synthetic": False})
    assert [f.name for f in flags] == list(qc.ORDER)
    by_name = {f.name: f for f in flags}
    for name in ("hemisphere_ratio", "left_right_side_mm", "mask_components", "mask_symmetry", "dice_mean",
                 "major_labels_present", "model_evaluation"):
        assert by_name[name].status == qc.OK, by_name[name]
    age = by_name["age_in_model_range"]                      # not computed: listed with the reason
    assert age.status == qc.NA and age.detail == "age at scan unknown"
    assert qc.worst(f.status for f in flags) == qc.OK
    no_reference = {f.name: f for f in qc.session_flags(labels, brain_mask(labels), phantom_t1w(labels), affine, volumes, 30.0)}
    assert no_reference["dice_mean"].status == qc.NA and "no reference" in no_reference["dice_mean"].detail


def test_a_mostly_empty_segmentation_fails_and_a_failed_model_warns():
    labels = phantom_labels()
    codes = sorted(int(c) for c in np.unique(labels))
    thalamus_only = np.where(np.isin(labels, (10, 49)), labels, 0)
    affine = ras_affine()
    volumes = volumes_by_code(region_volumes(thalamus_only, voxel_volume_mm3(affine)))
    flag = qc.major_labels_flag(volumes, codes)
    assert flag.status == qc.FAIL and "Left-Cerebral-White-Matter (2)" in flag.detail
    assert qc.model_evaluation_flag({"mean_dice": 0.013, "synthetic": True}).status == qc.WARN
    assert "failed its own evaluation" in qc.model_evaluation_flag({"mean_dice": 0.013, "synthetic": False}).detail
    assert "SYNTHETIC images only" in qc.model_evaluation_flag({"mean_dice": 0.95, "synthetic": True}).detail
    assert qc.model_evaluation_flag(None).status == qc.WARN
    good = qc.session_flags(labels, brain_mask(labels), phantom_t1w(labels), affine, volumes_by_code(region_volumes(labels, 27.0)), None,
                            model_codes=codes, dice_summary={"mean_dice": 0.013, "synthetic": False})
    assert qc.worst(f.status for f in good) == qc.WARN           # a failed model: never ok


def test_unreadable_age_is_one_warning_naming_the_file(tmp_path, caplog):
    """The participant level reads ages leniently (a warning, age unknown); the group level refuses."""
    from bibsnet_trainer.errors import InputError
    from bibsnet_trainer.bids.inputs import build_layout, collect_sessions
    write_description(tmp_path, "x")
    (tmp_path / "participants.tsv").write_text("participant_id\tage\nsub-01\tsoon\n")
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)
    (tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"")
    layout = build_layout(tmp_path, {}, validate=False)
    with caplog.at_level("WARNING"):
        sessions = collect_sessions(layout, need_images=True, strict_ages=False)
    assert [s.age_months for s in sessions] == [None]
    assert len(caplog.records) == 1 and "participants.tsv" in caplog.text and "age unknown" in caplog.text
    with pytest.raises(InputError, match="participants.tsv"):
        collect_sessions(layout, need_images=True)


def test_age_against_the_models_training_ages():
    assert qc.model_age_flag(4.0, (2.0, 50.0)).status == qc.OK
    assert qc.model_age_flag(50.0, (2.0, 50.0)).status == qc.OK            # the oldest training subject
    flag = qc.model_age_flag(300.0, (2.0, 50.0))
    assert flag.status == qc.WARN and flag.expected == "2-50 months"
    assert qc.model_age_flag(1.0, (2.0, None)).status == qc.WARN
    assert qc.model_age_flag(None, (2.0, 50.0)) is None and qc.model_age_flag(3.0, None) is None


def test_label_volumes_are_checked_against_the_shares_seen_in_training():
    from bibsnet_trainer.volumes import fraction_ranges, label_fractions
    labels = phantom_labels()
    shares = label_fractions(labels)
    ranges = fraction_ranges([shares, {c: s * 1.1 for c, s in shares.items()}], sorted(shares))
    volumes = volumes_by_code(region_volumes(labels, 8.0))           # another voxel size: shares unchanged
    assert qc.label_volumes_flag(volumes, ranges).status == qc.OK
    one_gone = {**volumes, 4: volumes[4] * 0.1}                 # left lateral ventricle a tenth of its size
    flag = qc.label_volumes_flag(one_gone, ranges)
    assert flag.status == qc.WARN and flag.value == f"{len(ranges) - 1}/{len(ranges)}"
    assert flag.detail.startswith("out: Left-Lateral-Ventricle (4)")
    mostly_empty = {2: volumes[2], 41: volumes[41]}                      # white matter only
    assert qc.label_volumes_flag(mostly_empty, ranges).status == qc.FAIL
    old_package = qc.label_volumes_flag(volumes, None)
    assert old_package.status == qc.NA and "no training volumes" in old_package.detail


def test_mask_symmetry_catches_a_mask_missing_part_of_one_side():
    labels = phantom_labels()
    mask, image, affine = brain_mask(labels), phantom_t1w(labels), ras_affine()
    whole = qc.mask_symmetry_flag(mask, image, affine)
    assert whole.status == qc.OK and whole.value > 0.9
    columns = np.flatnonzero(mask.any(axis=(1, 2)))                 # RAS: axis 0 runs left to right
    third, lopsided = mask.copy(), mask.copy()
    third[columns[0]: columns[0] + len(columns) // 3] = 0            # a third of the width gone, one side
    assert qc.mask_symmetry_flag(third, image, affine).status == qc.WARN
    lopsided[columns[0]: columns[0] + len(columns) // 2] = 0         # a whole hemisphere gone
    flag = qc.mask_symmetry_flag(lopsided, image, affine)
    assert flag.status == qc.FAIL and "one side" in flag.detail
    # the same data in another voxel order (first axis anterior-posterior): the mirror follows the affine
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    turned = qc.mask_symmetry_flag(lopsided.transpose(1, 0, 2), image.transpose(1, 0, 2), affine @ swap)
    assert turned.value == flag.value
    assert qc.mask_symmetry_flag(np.zeros_like(mask), image, affine).status == qc.FAIL
