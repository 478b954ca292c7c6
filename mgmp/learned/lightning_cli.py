"""``mgmp fit|validate|test|predict --config ...``: one LightningCLI over MGMPModule and ModelPoolDataModule.

The data module's output widths are linked into the model (``data.output_dims -> model.output_dims``).
A W&B logger falls back to a CSV logger when ``wandb`` is not installed.
"""
from __future__ import annotations

import importlib.util

from jsonargparse import Namespace
from pytorch_lightning.cli import LightningCLI

from mgmp.learned.datamodule import ModelPoolDataModule
from mgmp.learned.module import MGMPModule


class MGMPCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.output_dims", "model.output_dims", apply_on="instantiate")
        parser.link_arguments("data.view", "model.view")
        parser.link_arguments("data.extra_scores", "model.extra_scores")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        logger = cfg.trainer.logger
        if "Wandb" in str(getattr(logger, "class_path", "")) and importlib.util.find_spec("wandb") is None:
            save_dir = getattr(logger.init_args, "save_dir", None) or "runs"
            cfg.trainer.logger = Namespace(class_path="pytorch_lightning.loggers.CSVLogger",
                                           init_args=Namespace(save_dir=save_dir))

def cli_main(args: list[str]) -> int:
    MGMPCLI(MGMPModule, ModelPoolDataModule, args=args, save_config_kwargs={"overwrite": True},
            trainer_defaults={"accelerator": "auto"})
    return 0
