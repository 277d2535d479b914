"""What every ``dec-lightning`` command shares: the config's parser and the pretraining trainer.

The entry point (``main.py``) and the subcommands (``predict.py``, ``select_k.py``) import from here,
and the subcommands never from each other or from the entry point, so the package has no import circle.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy
from torch import nn

from dec_lightning.callbacks import FlushDenormals, PhaseProgress
from dec_lightning.modules import DEC, AutoencoderPretraining


class DECLightningCLI(LightningCLI):
    """LightningCLI whose config also holds the shared encoder and the pretraining stage."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_subclass_arguments(nn.Module, "encoder", required=True)
        # optional: MLP encoders default to their mirror; IDEC (model.reconstruction_weight > 0) keeps it
        parser.add_subclass_arguments(nn.Module, "decoder", required=False)
        parser.add_class_arguments(AutoencoderPretraining, "pretrain")
        # Both stages build the encoder (and decoder) from the same config, so each checkpoint records
        # it and reloads alone (`DEC.load_from_checkpoint(path)`); `run` copies the pretrained weights.
        # In subclass mode (`build_cli`: any module of the DEC family) the model's arguments sit under init_args.
        model = "model.init_args" if self.subclass_mode_model else "model"
        for name in ("encoder", "decoder"):
            parser.link_arguments(name, f"pretrain.{name}")
            parser.link_arguments(name, f"{model}.{name}")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="DEC checkpoint: resume `cluster`, or `predict` with it",
        )

    def pretrain_trainer(self) -> L.Trainer:
        """A trainer with the clustering trainer's hardware settings and the pretraining length."""
        module: AutoencoderPretraining = self.config_init["pretrain"]
        logger = TensorBoardLogger(save_dir=self.log_root(), name="pretrain")
        strategy = layerwise_ddp_strategy(self.trainer.strategy, module)
        return self.instantiate_trainer(
            max_steps=module.total_steps,
            max_epochs=-1,
            callbacks=pretraining_callbacks(self.trainer),
            logger=logger,
            **({"strategy": strategy} if strategy is not None else {}),
        )

    def log_root(self) -> str:
        logger = self.trainer.logger
        return logger.save_dir if logger is not None and logger.save_dir else self.trainer.default_root_dir


def pretraining_callbacks(trainer: L.Trainer) -> list[L.Callback]:
    """The pretraining trainer's callbacks: progress, and of the configured ones only `FlushDenormals`,
    a hardware setting like precision; the others (k-means init, refresh of P, ...) belong to clustering."""
    return [PhaseProgress(), *(c for c in trainer.callbacks if isinstance(c, FlushDenormals))]


def layerwise_ddp_strategy(strategy: Strategy, module: AutoencoderPretraining) -> DDPStrategy | None:
    """For pretraining under DDP with a layer-wise phase: the same DDP, told that parameters go unused.

    Each greedy layer-wise step trains one encoder/decoder layer pair; DDP's reducer waits for
    a gradient of every parameter unless ``find_unused_parameters`` is set, and fails otherwise.
    None: the clustering trainer's strategy serves as it is.
    """
    if module.num_layers == 0 or not isinstance(strategy, DDPStrategy):
        return None
    if strategy._ddp_kwargs.get("find_unused_parameters"):
        return None
    return DDPStrategy(
        start_method=strategy._start_method,
        process_group_backend=strategy.process_group_backend,
        timeout=strategy._timeout,
        **{**strategy._ddp_kwargs, "find_unused_parameters": True},
    )


def build_cli(command: str, args: list[str], cli_class: type[DECLightningCLI] = DECLightningCLI, **kwargs: Any):
    """Parse the config into models, data and trainer (no training) for the given command."""
    with warnings.catch_warnings():
        # the command word is ours, so sys.argv and args differ by design
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return cli_class(
            DEC,
            L.LightningDataModule,
            subclass_mode_model=True,  # `--model dec_lightning.modules.DKM`; DEC when the config names none
            subclass_mode_data=True,
            run=False,
            args=args,
            seed_everything_default=0,
            auto_configure_optimizers=False,  # the modules take their optimizer as an argument
            parser_kwargs={"prog": f"dec-lightning {command}"},
            **kwargs,
        )
