import numpy as np

from bibsnet_trainer.labels import LabelTable, freesurfer_names, label_name, target_code


def test_table_round_trip_and_names():
    table = LabelTable.from_codes([42, 2, 172, 0, 2])
    assert table.codes == (0, 2, 42, 172)
    codes = np.array([[0, 2], [42, 172]])
    index = table.to_index(codes)
    assert index.tolist() == [[0, 1], [2, 3]]
    assert np.array_equal(table.to_codes(index), codes)
    assert table.names()[3] == "Vermis"
    assert LabelTable.from_json(table.as_json()) == table


def test_codes_outside_table_become_background():
    table = LabelTable.from_codes([0, 2])
    assert table.to_index(np.array([2, 41, 530])).tolist() == [1, 0, 0]


def test_target_codes_drop_extra_cerebral_and_merge_like_synthseg():
    assert target_code(507) == 0 and target_code(530) == 0      # skull, soft tissue
    assert target_code(25) == 2 and target_code(57) == 41        # lesions into white matter
    assert target_code(17) == 17 and target_code(172) == 172


def test_names_cover_aseg_codes():
    names = freesurfer_names()
    assert names[2] == "Left-Cerebral-White-Matter" and names[41] == "Right-Cerebral-White-Matter"
    assert label_name(999) == "Label-999"


def test_left_right_pairs_and_mirroring():
    from bibsnet_trainer.labels import left_right_pairs, mirror_lut
    pairs = left_right_pairs()
    assert pairs[2] == 41 and pairs[41] == 2 and pairs[17] == 53 and pairs[136] == 163 and pairs[164] == 137
    assert 16 not in pairs and 172 not in pairs and 24 not in pairs
    codes = np.array([0, 2, 3, 16, 41, 42, 172, 507])
    assert mirror_lut(int(codes.max()))[codes].tolist() == [0, 41, 42, 16, 2, 3, 172, 507]
