"""`--num-gpus N` trains every GPU's process with exactly the settings of a single-device run
(epochs, iterations, time budget, seed, fine-tuning weights), without needing a GPU to check."""
import sys
import types

import numpy as np
import pytest

from bibsnet_trainer.nnunet import runner


class FakeTrainer:
    def __init__(self, device):
        self.device = device
        self.current_epoch = 0
        self.num_epochs = 1000            # nnU-Net's defaults, which a DDP run must not keep
        self.num_iterations_per_epoch = 250
        self.num_val_iterations_per_epoch = 50
        self.time_budget_s = None
        self.save_every = 50
        self.trained = False
        self.settings = None

    def apply_settings(self, settings):
        self.settings = settings

    def on_epoch_end(self):
        pass

    def run_training(self):
        self.trained = True
        self.numpy_draw = np.random.random()


@pytest.fixture
def recorded(monkeypatch):
    record = {"trainers": [], "checkpoints": [], "ddp": []}
    run_training = types.ModuleType("nnunetv2.run.run_training")

    def get_trainer_from_args(dataset, configuration, fold, trainer_name, continue_training, device):
        trainer = FakeTrainer(device)
        trainer.args = (dataset, configuration, fold, trainer_name, continue_training)
        record["trainers"].append(trainer)
        return trainer

    run_training.get_trainer_from_args = get_trainer_from_args
    run_training.maybe_load_checkpoint = lambda t, resume, val, weights: record["checkpoints"].append(weights)
    run_training.setup_ddp = lambda rank, world: record["ddp"].append(("setup", rank, world))
    run_training.cleanup_ddp = lambda: record["ddp"].append(("cleanup",))
    monkeypatch.setitem(sys.modules, "nnunetv2.run.run_training", run_training)
    import torch
    import torch.multiprocessing as mp
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(mp, "spawn", lambda fn, args, nprocs, join: [fn(rank, *args) for rank in range(nprocs)])
    monkeypatch.setattr(runner, "_load_output_layers", lambda trainer, path: record.setdefault("output", []).append(path))
    return record


SETTINGS = {"optimizer": "adamw", "initial_lr": 0.01, "cpu_precision": "bf16", "synthetic_fraction": 0.3}


def _job(tmp_path, device):
    job = runner.TrainJob("Dataset501_X", "2d_small", 0, epochs=7, iterations=13, val_iterations=3, device=device,
                          seed=5, minutes=2.5, pretrained="/models/base.pth", trainer_name="nnUNetTrainerBibsnet",
                          settings=SETTINGS)
    path = tmp_path / f"job_{device}.json"
    path.write_text(job.to_json())
    return str(path)


def _settings(trainer):
    return (trainer.args, trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch,
            trainer.time_budget_s, trainer.save_every, trainer.settings)


def test_ddp_processes_get_what_a_single_device_run_gets(recorded, tmp_path):
    runner.main(["train", "--job", _job(tmp_path, "cpu")])
    single = recorded["trainers"][0]
    assert _settings(single)[1:] == (7, 13, 3, 150.0, 5, SETTINGS)   # the job's settings reach the trainer

    runner.main(["train", "--job", _job(tmp_path, "cuda"), "--num-gpus", "2"])
    ranks = recorded["trainers"][1:]
    assert len(ranks) == 2 and all(t.trained for t in ranks)
    assert all(_settings(t) == _settings(single) for t in ranks)
    assert recorded["checkpoints"] == ["/models/base.pth"] * 3        # fine-tuning weights on every rank
    assert len(recorded["output"]) == 3
    assert recorded["ddp"] == [("setup", 0, 2), ("cleanup",), ("setup", 1, 2), ("cleanup",)]
    # seeded, with one patch-sampling stream per GPU (not the same batches twice)
    assert ranks[0].numpy_draw == single.numpy_draw
    assert ranks[1].numpy_draw != ranks[0].numpy_draw
