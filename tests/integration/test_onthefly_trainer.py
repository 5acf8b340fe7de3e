"""On-the-fly synthesis trainer (nnUNetTrainerBibsnetOnTheFly): a tiny nnU-Net dataset of brain
phantoms is planned and preprocessed (small configuration), then the trainer is found by nnU-Net's
own lookup (`nnUNet_extTrainer`) and trained for a few short epochs on the CPU."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from bibsnet_trainer.labels import LabelTable, to_target
from bibsnet_trainer.nnunet import training
from bibsnet_trainer.nnunet.dataset import RawDatasetWriter, dataset_name
from bibsnet_trainer.nnunet.model_input import ModelInput
from bibsnet_trainer.nnunet.trainer_names import TRAINERS_DIR
from bibsnet_trainer.nnunet.presets import TrainingPreset
from bibsnet_trainer.synthesis.priors import load_priors
from phantoms import phantom_labels, phantom_t1w, ras_affine

TRAINER = "nnUNetTrainerBibsnetOnTheFly"
DATASET_ID = 871
VOXEL_MM = 3.0
PRESET = TrainingPreset("3d_small", epochs=4, iterations_per_epoch=6, val_iterations_per_epoch=1,
                        patch_size=(32, 32, 32), features_per_stage=(8, 16, 32), batch_size=2)


@pytest.fixture(scope="module")
def nnunet_env(tmp_path_factory):
    """A planned and preprocessed phantom dataset (4 cases: 3 train, 1 val) and nnU-Net's env
    (planned once for the module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine, 2 threads can make a step 30x slower
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            yield from _planned_dataset(tmp_path_factory.mktemp("onthefly"), monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _planned_dataset(tmp_path, monkeypatch):
    folders = training.NnunetFolders(tmp_path / "nnunet")
    for key, value in dict(nnUNet_raw=folders.raw, nnUNet_preprocessed=folders.preprocessed,
                           nnUNet_results=folders.results, nnUNet_extTrainer=TRAINERS_DIR).items():
        monkeypatch.setenv(key, str(value))
    for key, value in dict(NIPYPE_NO_ET="1", nnUNet_n_proc_DA="0", nnUNet_def_n_proc="2",
                           nnUNet_compile="false", OMP_NUM_THREADS="1").items():
        monkeypatch.setenv(key, value)

    name = dataset_name(DATASET_ID, "onthefly")
    maps = [to_target(phantom_labels(seed=i)) for i in range(4)]
    table = LabelTable.from_codes(np.unique(np.concatenate([np.unique(m) for m in maps])))
    writer = RawDatasetWriter(folders.raw / name, ModelInput(["T1w"], table))
    cases = []
    for i, labels in enumerate(maps):
        affine = ras_affine(VOXEL_MM, labels.shape)
        image = nib.Nifti1Image(phantom_t1w(phantom_labels(seed=i), seed=i), affine)
        writer.add_case(f"case{i:03d}", [image], nib.Nifti1Image(labels.astype(np.int16), affine))
        cases.append(f"case{i:03d}")
    writer.write_dataset_json({"name": "onthefly"})
    training.plan_and_preprocess(folders, DATASET_ID, PRESET, nprocs=2, omp_nthreads=1)
    (folders.preprocessed / name / "splits_final.json").write_text(  # nnU-Net's format, one fold
        json.dumps([{"train": cases[:3], "val": cases[3:]}]))
    yield folders, name, table


def make_trainer(name: str, trainer_name: str = TRAINER):
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(name, PRESET.configuration, 0, trainer_name, device=torch.device("cpu"))
    trainer.num_epochs = PRESET.epochs
    trainer.num_iterations_per_epoch = PRESET.iterations_per_epoch
    trainer.num_val_iterations_per_epoch = PRESET.val_iterations_per_epoch
    trainer.save_every = 1000
    return trainer


def test_onthefly_trainer_trains_on_fresh_synthetic_contrasts(nnunet_env, monkeypatch):
    folders, name, table = nnunet_env
    torch.manual_seed(0)
    np.random.seed(0)
    trainer = make_trainer(name)
    assert type(trainer).__name__ == TRAINER
    assert type(trainer).__mro__[1].__name__ == "nnUNetTrainerBibsnet"
    assert trainer.synthetic_fraction == 1.0
    assert trainer.index_codes.tolist() == list(table.codes)
    trainer.preview_every = 2   # previews at epochs 0, 2 and 3 (the last)
    trainer.initialize()

    # what the network is fed in training mode, and what synthesis made of each batch
    fed, synthesized = [], []
    trainer.network.register_forward_pre_hook(
        lambda module, args: fed.append(args[0].detach().clone()) if module.training else None)
    original = trainer.synthesize_batch

    def spy(data, target, keys=None):
        out = original(data, target, keys)
        synthesized.append((data.detach().clone(), target[0].detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(trainer, "synthesize_batch", spy)
    trainer.run_training()

    n_iterations = PRESET.epochs * PRESET.iterations_per_epoch
    assert len(synthesized) == len(fed) == n_iterations
    losses = trainer.logger.get_value("train_losses", step=None)
    assert len(losses) == PRESET.epochs and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.2, losses

    # the network trained on the synthetic images, never on the stored ones
    for (stored, labels, synthetic), network_input in zip(synthesized, fed):
        assert torch.equal(network_input, synthetic)
        assert synthetic.shape == stored.shape == (2, 1, *PRESET.patch_size)
        assert labels.shape == (2, 1, *PRESET.patch_size)
        assert torch.isfinite(synthetic).all()
        assert not torch.allclose(synthetic, stored, atol=1e-2)
        for sample in synthetic[:, 0]:  # z-scored (a patch of black background only stays 0)
            assert abs(float(sample.mean())) < 1e-3
            assert abs(float(sample.std()) - 1) < 1e-2 or float(sample.abs().max()) == 0
    # a new contrast every iteration: the order of the class means changes between iterations
    def class_order(labels, image):
        present = labels.unique()
        return tuple(present[torch.argsort(torch.stack([image[labels == k].mean() for k in present]))].tolist())

    orders = {class_order(labels[b, 0], synthetic[b, 0]) for _, labels, synthetic in synthesized for b in range(2)}
    assert len(orders) > 1
    fold_dir = folders.results / name / f"{TRAINER}__nnUNetPlans__3d_small" / "fold_0"
    assert (fold_dir / "checkpoint_final.pth").is_file()

    # the preview of what the network was fed, written while training ran
    log = open(trainer.log_file).read()
    assert log.count("synthesis preview written") == 3, log
    import matplotlib.image
    png = matplotlib.image.imread(fold_dir / "synthesis_preview.png")
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 400
    assert png[..., :3].std() > 0.1   # slices and outlines, not a blank canvas


@pytest.mark.parametrize("share", [1.0, 0.0])
def test_the_standard_trainer_feeds_real_images_with_random_contrasts(nnunet_env, monkeypatch, share):
    """`contrast_augmentation` in the job's settings: nnU-Net's own data loader and augmentation
    give the stored T1w images, now with random tissue contrasts (nnunet.contrast): white matter
    is darker than the ventricles in some samples; without it, in none."""
    _, name, table = nnunet_env
    torch.manual_seed(0)
    np.random.seed(0)
    trainer = make_trainer(name, "nnUNetTrainerBibsnet")
    trainer.apply_settings({"contrast_augmentation": share})
    trainer.num_epochs = 1
    trainer.initialize()
    fed = []
    original = trainer.train_step

    def spy(batch):
        fed.append((batch["data"].detach().clone(), batch["target"][0].detach().clone()))
        return original(batch)

    monkeypatch.setattr(trainer, "train_step", spy)
    trainer.run_training()
    assert len(fed) == 6 and np.all(np.isfinite(trainer.logger.get_value("train_losses", step=None)))

    white, ventricle = (list(table.codes).index(code) for code in (2, 4))
    darker = compared = 0
    for data, labels in fed:
        for image, target in zip(data[:, 0], labels[:, 0]):
            if (target == white).sum() > 20 and (target == ventricle).sum() > 20:
                compared += 1
                darker += float(image[target == white].mean()) < float(image[target == ventricle].mean())
    assert compared >= 6
    assert (darker >= 2) if share else (darker == 0), (darker, compared)
    assert ("contrast augmentation: 1 of the training samples" in open(trainer.log_file).read()) == bool(share)


def test_synthesis_follows_label_classes_and_fraction(nnunet_env, monkeypatch):
    _, name, table = nnunet_env
    trainer = make_trainer(name)
    labels = torch.as_tensor(table.to_index(to_target(phantom_labels(seed=1)))[:32, :32, :32].astype(np.int64))
    index = {code: i for i, code in enumerate(table.codes)}

    # bare Gaussian mixture: left and right white matter (one class of the synthseg-tissue
    # table) share a Gaussian
    trainer.priors = load_priors("uniform", "synthseg-tissue")
    trainer.intensity_augmentation = None
    trainer.gmm.fwhm = 0.0
    torch.manual_seed(1)
    image = trainer.synthesize_sample(labels, "T1w")
    assert image.shape == labels.shape and image.dtype == torch.float32
    wm_left, wm_right = image[labels == index[2]], image[labels == index[41]]
    gm_left = image[labels == index[3]]
    gap = abs(float(wm_left.mean()) - float(gm_left.mean()))
    assert abs(float(wm_left.mean()) - float(wm_right.mean())) < 0.2 * gap + 0.05
    assert abs(float(wm_left.std()) - float(wm_right.std())) < 0.2 * float(wm_left.std()) + 0.05

    # fraction 0: batches pass untouched; the fraction from the training job's settings
    data = torch.randn(2, 1, 32, 32, 32)
    target = [labels[None, None].repeat(2, 1, 1, 1, 1).float()]
    trainer.synthetic_fraction = 0.0
    assert trainer.synthesize_batch(data, target) is data
    half = make_trainer(name)
    half.apply_settings({"synthetic_fraction": 0.5})
    assert half.synthetic_fraction == 0.5
    torch.manual_seed(2)
    replaced = [not torch.equal(s, d) for _ in range(10) for s, d in zip(half.synthesize_batch(data, target), data)]
    assert 0 < sum(replaced) < len(replaced)


def test_each_sample_gets_the_priors_of_its_age_bin(nnunet_env):
    """Infant contrast inverts with age: with priors by age bin and the case ids of the batch,
    a newborn's patch gets bright cortex over dark white matter and a toddler's the reverse; a
    case of unknown age gets the pooled priors."""
    from bibsnet_trainer.synthesis.priors import ChannelPriors, IntensityPriors

    _, name, table = nnunet_env
    trainer = make_trainer(name)
    trainer.intensity_augmentation = None
    trainer.gmm.fwhm = 0.0
    classes = {0: 0, 2: 1, 3: 2}        # background, white matter, cortex (others: defaults)

    def priors(wm: float, gm: float) -> IntensityPriors:
        means = np.array([[0.0, wm, gm], [1.0, 1.0, 1.0]])
        return IntensityPriors(classes, {"T1w": ChannelPriors("normal", means, np.array([[1.0] * 3, [0.1] * 3]))})

    trainer.priors_by_bin = {"0-3mo": priors(wm=40, gm=200), "24-60mo": priors(wm=200, gm=40)}
    trainer.case_age_bins = {"newborn": "0-3mo", "toddler": "24-60mo"}
    labels = torch.as_tensor(table.to_index(to_target(phantom_labels(seed=1)))[:32, :32, :32].astype(np.int64))
    index = {code: i for i, code in enumerate(table.codes)}
    target = [labels[None, None].repeat(3, 1, 1, 1, 1).float()]
    torch.manual_seed(0)
    images = trainer.synthesize_batch(torch.zeros(3, 1, 32, 32, 32), target, keys=["newborn", "toddler", "unknown"])
    contrast = [float(img[0][labels == index[2]].mean() - img[0][labels == index[3]].mean()) for img in images]
    assert contrast[0] < -1 and contrast[1] > 1, contrast        # z-scored: cortex vs white matter
    assert trainer.priors_for("unknown") is trainer.priors and trainer.priors_for(None) is trainer.priors


def test_configuration_from_the_training_job(nnunet_env):
    """The trainer's synthesis settings come from the job (runner.configure_trainer), not from
    dataset.json or the environment."""
    from bibsnet_trainer.nnunet.runner import TrainJob, configure_trainer

    _, name, _ = nnunet_env
    pooled = load_priors("synthseg-t1", "synthseg").as_json()
    settings = {"optimizer": "adamw", "initial_lr": 0.003, "synthetic_fraction": 0.25,
                "synthesis": {"config": {"snr": 25.0, "priors": "synthseg-t1", "unknown_key": 1},
                              "priors": {"pooled": pooled, "by_age": {"0-3mo": pooled}},
                              "case_age_bins": {"case000": "0-3mo"}}}
    job = TrainJob.from_json(TrainJob(name, PRESET.configuration, 0, epochs=2, iterations=3, val_iterations=1,
                                      device="cpu", settings=settings).to_json())
    trainer = make_trainer(name)
    assert trainer.synthesis_config.snr != 25.0 and trainer.optimizer_name == "sgd"   # nnU-Net's defaults first
    configure_trainer(trainer, job)
    assert trainer.synthesis_config.snr == 25.0 and trainer.synthetic_fraction == 0.25
    assert trainer.optimizer_name == "adamw" and trainer.initial_lr == 0.003
    assert "T1w" in trainer.priors.channels
    assert trainer.priors_for("case000") is trainer.priors_by_bin["0-3mo"] is not trainer.priors
    assert trainer.priors_for("case001") is trainer.priors


@pytest.mark.slow
def test_group_level_with_the_onthefly_trainer(phantom_bids, tmp_path, capsys):
    """run.py group --trainer onthefly: the package holds the on-the-fly trainer's model and the
    participant level segments with it."""
    from bibsnet_trainer.cli.run import main
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(phantom_bids), str(out), "group", "-w", str(work), "--preset", "cpu", "--epochs", "2",
                 "--iterations-per-epoch", "3", "--nprocs", "2", "--device", "cpu", "--synthetic-per-map", "1",
                 "--trainer", "onthefly", "--synthetic-fraction", "0.8"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads(next((out / "models").glob("*/manifest.json")).read_text())
    assert manifest["nnunet_folder"].startswith("nnUNetTrainerBibsnetOnTheFly__")
    assert manifest["slice_context_mm"] == [0.0]     # it synthesises single slices: no neighbours
    trainer_log = next(work.rglob("fold_0/training_log_*.txt")).read_text()
    assert "on-the-fly synthesis: fraction 0.8" in trainer_log
    report = (out / "reports" / "group_desc-dice_report.html").read_text()
    assert "On-the-fly synthetic training patches as the network saw them" in report
    job = json.loads((work / "nnunet" / "jobs" / "train_fold0.json").read_text())
    assert job["settings"]["synthesis"]["config"]["intensity_classes"] == "synthseg-tissue"   # the default
    assert job["settings"]["synthetic_fraction"] == 0.8 and job["trainer_name"] == "nnUNetTrainerBibsnetOnTheFly"
    code = main([str(phantom_bids), str(out), "participant", "-w", str(work), "--device", "cpu",
                 "--participant-label", "04"])
    assert code == 0
    assert (out / "sub-04" / "anat" / "sub-04_space-T1w_desc-aseg_dseg.nii.gz").is_file()
