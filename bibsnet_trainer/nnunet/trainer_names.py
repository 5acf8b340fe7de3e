"""The app's nnU-Net trainers by name, and how nnU-Net finds them: their folder is put on
`nnUNet_extTrainer`, nnU-Net's lookup path for trainers outside its own package."""
from __future__ import annotations

import os
from pathlib import Path

TRAINER_NAME = "nnUNetTrainerBibsnet"
ONTHEFLY_TRAINER_NAME = "nnUNetTrainerBibsnetOnTheFly"   # synthesises a new contrast for every batch
TRAINERS_DIR = Path(__file__).parent / "trainers"


def register_trainers(env: dict | None = None) -> dict:
    """Point nnU-Net's trainer lookup (`nnUNet_extTrainer`) at our trainers folder."""
    env = os.environ if env is None else env
    paths = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if str(TRAINERS_DIR) not in paths:
        env["nnUNet_extTrainer"] = os.pathsep.join([str(TRAINERS_DIR), *paths])
    return env
