import json
import logging

import pytest

from bibsnet_trainer.errors import ModelError
from bibsnet_trainer.models.registry import (ENV_MODELS_DIR, ModelInfo, choose_model, model_info,
                                      models_dirs, parse_age_range, scan_models)


def fake(name, modalities, age_range=None, release="r20260101", order=0):
    return model_info(f"/models/{name}", {"name": name, "release": release, "modalities": modalities,
                                          "age_range": age_range}, order=order)


def write_manifest(root, folder, **manifest):
    (root / folder).mkdir(parents=True)
    (root / folder / "manifest.json").write_text(json.dumps(manifest))
    return root / folder


BOTH = {"T1w", "T2w"}


def test_two_channel_preferred_when_both_present_else_single():
    t1, t2, both = fake("t1", ["T1w"]), fake("t2", ["T2w"]), fake("both", ["T1w", "T2w"])
    models = [t1, t2, both]
    assert choose_model(models, BOTH) is both
    assert choose_model(models, {"T1w"}) is t1
    assert choose_model(models, {"T2w"}) is t2
    assert choose_model([t2, t1], BOTH) is t1            # no two-channel model: T1w-only first


def test_age_narrows_and_excludes():
    generic = fake("generic", ["T1w"])
    infant = fake("infant", ["T1w"], [0, 12])
    toddler = fake("toddler", ["T1w"], [12, 36])
    newborn = fake("newborn", ["T1w"], [0, 3])
    models = [generic, infant, toddler, newborn]
    assert choose_model(models, {"T1w"}, age_months=6) is infant          # range beats no range
    assert choose_model(models, {"T1w"}, age_months=1) is newborn         # narrower range wins
    assert choose_model(models, {"T1w"}, age_months=12) is infant         # both ends inclusive; narrower wins
    assert choose_model(models, {"T1w"}, age_months=20) is toddler
    assert choose_model(models, {"T1w"}, age_months=400) is generic       # ranges excluding the age drop out
    assert choose_model(models, {"T1w"}, age_months=None) is generic      # unknown age: generic first
    assert choose_model([infant, toddler], {"T1w"}, age_months=None) is toddler   # then the widest
    with pytest.raises(ModelError, match="age 400 months"):
        choose_model([infant, toddler], {"T1w"}, age_months=400, searched=["/out/models"])


def test_open_bounds():
    adult = fake("adult", ["T1w"], [216, None])
    assert adult.age_range == (216.0, None)
    assert choose_model([adult], {"T1w"}, age_months=500) is adult
    with pytest.raises(ModelError):
        choose_model([adult], {"T1w"}, age_months=100)


def test_newest_release_wins_ties_then_scan_order():
    old = fake("m", ["T1w"], release="r20250101", order=0)
    new = fake("m", ["T1w"], release="r20260301", order=1)
    unknown = fake("m", ["T1w"], release="", order=2)
    assert choose_model([old, new, unknown], {"T1w"}) is new
    a, b = fake("a", ["T1w"], order=1), fake("b", ["T1w"], order=0)
    assert choose_model([a, b], {"T1w"}) is b


def test_override_always_wins():
    chosen = fake("mine", ["T2w"], [0, 1])
    assert choose_model([fake("t1", ["T1w"])], {"T1w"}, age_months=300, override=chosen) is chosen
    assert choose_model([], set(), override=chosen) is chosen


def test_error_names_folder_and_lists_models():
    models = [fake("t2only", ["T2w"], [0, 6]), fake("both", ["T1w", "T2w"])]
    with pytest.raises(ModelError) as info:
        choose_model(models, {"T1w"}, age_months=3, searched=["/out/models", "/shared/models"])
    err = info.value
    assert err.path == "/out/models"
    assert "/shared/models" in err.message
    assert "t2only r20260101 [T2w, ages 0-6 months]" in err.message and "both r20260101 [T1w+T2w" in err.message
    with pytest.raises(ModelError, match="no model package installed in /out/models"):
        choose_model([], {"T1w"}, searched=["/out/models"])


def test_parse_age_range_rejects_nonsense():
    assert parse_age_range(None) is None and parse_age_range([None, None]) is None
    assert parse_age_range([0, 6]) == (0.0, 6.0)
    assert parse_age_range([6, 6]) == (6.0, 6.0)        # a model trained on subjects of one age
    for bad in ([6, 0], [1], "0-6", [0, "six"], [True, 3], [0, float("nan")]):
        with pytest.raises(ModelError):
            parse_age_range(bad)


def test_single_age_model_serves_that_age(tmp_path):
    write_manifest(tmp_path, "six_months", name="six_months", release="r20260101", modalities=["T1w"],
                   age_range=[6, 6])
    (model,) = scan_models([tmp_path])
    assert model.fits_age(6.0) and not model.fits_age(7.0) and not model.fits_age(5.0)


def test_scan_reads_folders_in_order_and_skips_broken(tmp_path, caplog):
    out_models, shared = tmp_path / "out" / "models", tmp_path / "shared"
    write_manifest(out_models, "b_t1", name="b_t1", release="r20260101", modalities=["T1w"], age_range=None)
    write_manifest(shared, "a_both", name="a_both", release="r20260202", modalities=["T1w", "T2w"],
                   age_range=[0, 24])
    write_manifest(shared, "broken", name="broken", release="r1", modalities=["FLAIR"])
    (shared / "garbage").mkdir()
    (shared / "garbage" / "manifest.json").write_text("{not json")
    (shared / "not_a_package").mkdir()
    folders = models_dirs(tmp_path / "out", env={ENV_MODELS_DIR: f"{shared}:{tmp_path / 'missing'}:{shared}"})
    assert folders == [out_models, shared, tmp_path / "missing"]
    with caplog.at_level(logging.WARNING):
        models = scan_models(folders)
    assert [m.name for m in models] == ["b_t1", "a_both"]
    assert [m.order for m in models] == [0, 1]
    assert models[1].age_range == (0.0, 24.0) and models[1].path == shared / "a_both"
    assert "broken" in caplog.text and "garbage" in caplog.text
    assert choose_model(models, BOTH, age_months=5).name == "a_both"
    assert choose_model(models, BOTH, age_months=30).name == "b_t1"
    assert models_dirs(None, env={}) == []


def test_model_info_from_opened_manifest(tmp_path):
    info = model_info(tmp_path, {"name": "m", "release": "r20260101", "modalities": ["T1w"], "files": {}})
    assert isinstance(info, ModelInfo) and info.age_range is None and info.manifest["files"] == {}
    with pytest.raises(ModelError, match="modalities"):
        model_info(tmp_path, {"name": "m", "modalities": []})
