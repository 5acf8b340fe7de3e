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
