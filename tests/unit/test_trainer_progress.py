"""The trainer redraws nnU-Net's progress plot at most once per interval, and always at the end."""
import types

from bibsnet_trainer.nnunet.trainers import nnUNetTrainerBibsnet as module


def _trainer(drawn):
    trainer = module.nnUNetTrainerBibsnet.__new__(module.nnUNetTrainerBibsnet)
    trainer.logger = types.SimpleNamespace(plot_progress_png=lambda folder: drawn.append(folder))
    trainer.local_rank, trainer.output_folder = 0, "fold_0"
    return trainer


def test_progress_plot_is_throttled_and_drawn_at_the_end(monkeypatch):
    drawn = []
    trainer = _trainer(drawn)
    clock = iter([0.0, 0.0, 30.0, 200.0, 250.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(module.nnUNetTrainer, "on_train_start", lambda self: None)
    monkeypatch.setattr(module.nnUNetTrainer, "on_train_end", lambda self: None)
    trainer.num_epochs, trainer.current_epoch = 10, 0
    trainer.on_train_start()                          # clock 0.0 (the budget's start)
    for _ in range(4):                                # what nnU-Net's on_epoch_end calls, each epoch
        trainer.logger.plot_progress_png("fold_0")    # 0.0 drawn, 30 not, 200 drawn, 250 not
    assert len(drawn) == 2
    trainer.on_train_end()
    assert len(drawn) == 3
