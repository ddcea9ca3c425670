"""Training: the phases of greedy growing (core -> grow -> finetune, and scratch as the baseline) on
accelerate. `load_config` reads a recipe, `train` runs one phase and writes a loadable model folder."""

from studio.train.config import PHASES, TrainConfig, list_presets, load_config
from studio.train.trainer import TrainingDivergedError, Trainer, load_run_config, train

__all__ = ["PHASES", "TrainConfig", "Trainer", "TrainingDivergedError", "list_presets", "load_config",
           "load_run_config", "train"]
