"""``dec-lightning select-k``: choose K by DEC's generalizability (Xie et al., 2016, sec. 5.5).

    dec-lightning select-k --config configs/digits.yaml --k 5:15 [--holdout 0.2] [--output_dir DIR]

Reads the same YAML as ``run``: the data is split into a training part and a held-out part
(``--holdout``, seeded by ``seed_everything``); the autoencoder is pretrained once, on the
training part, with the config's ``pretrain`` schedule (or loaded from ``--model.pretrained``);
then DEC runs for every K with the config's ``model`` settings, ``trainer.max_steps`` and DEC
callbacks (k-means init, refresh of P, tolerance, re-clustering), and is scored on the held-out
part. Writes ``select_k.csv`` (one row per K, ``recommended`` = 1 on the pick) and TensorBoard
scalars ``select_k/*`` with K as the step, into ``--output_dir`` (default: the config's log
folder + ``select_k/version_N``; the pretraining's own logs and checkpoint go to ``select_k_pretrain``
there); the last line printed is the recommendation, its rule and the drop of G behind it.
"""

from __future__ import annotations

import copy
import time

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from dec_lightning.callbacks import PhaseProgress, RunSummary, TensorBoardViews
from dec_lightning.cli.common import DECLightningCLI, build_cli, pretraining_callbacks
from dec_lightning.data.base import InMemoryDataModule
from dec_lightning.data.validation import ConfigError, check_model_fits_data
from dec_lightning.modules.dec import load_encoder_weights
from dec_lightning.select_k import (
    CSV_FILE,
    SelectKResult,
    check_ks,
    datamodule_of,
    parse_k_range,
    select_k,
    split_dataset,
)

# Report-only callbacks: they write per-run views, not part of what DEC trains.
_VIEWS = (TensorBoardViews, PhaseProgress, RunSummary)
# Per-K arguments of the config's model that select-k sets itself.
_OWN = ("encoder", "decoder", "augment", "pretrained", "n_clusters")


class DECSelectKCLI(DECLightningCLI):
    """The training CLI's config plus the K range, the held-out fraction and where to write."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--k", type=str, default="5:15", help="K values: START:STOP (both included), or 4,8,10")
        parser.add_argument("--holdout", type=float, default=0.2, help="fraction of the samples held out for L_val")
        parser.add_argument("--silhouette_samples", type=int, default=2000, help="held-out rows for the silhouette")
        parser.add_argument("--output_dir", type=str | None, default=None, help="folder for select_k.csv and events")


def dec_callbacks(cli: DECLightningCLI) -> list[L.Callback]:
    """The config's DEC callbacks (k-means init, refresh, tolerance, ...), without views and Lightning's own."""
    callbacks = cli.config_init["trainer"].get("callbacks") or []
    return [c for c in callbacks if not isinstance(c, _VIEWS) and not type(c).__module__.startswith("lightning.")]


def run_select_k(args: list[str]) -> DECSelectKCLI:
    """Parse ``--config FILE --k 5:15 [--holdout F] [--output_dir DIR] [--key value ...]`` and select K.

    Returns the CLI with the `SelectKResult` as its ``result`` attribute, for tests. One device:
    the K runs are sequential and each is small.
    """
    start = time.perf_counter()
    cli = build_cli("select-k", args, cli_class=DECSelectKCLI, save_config_callback=None)
    if cli.config.ckpt_path:
        raise ConfigError(
            "select-k trains a DEC model per K and takes no --ckpt_path; "
            "--model.pretrained PATH reuses a pretrained autoencoder"
        )
    ks = parse_k_range(cli.config.k)
    datamodule = cli.datamodule
    if not isinstance(datamodule, InMemoryDataModule):
        raise ConfigError(
            f"select-k needs an in-memory DataModule (the package's own); got {type(datamodule).__name__}"
        )
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_model_fits_data(cli.model.encoder, datamodule, None)
    seed = int(cli.config.seed_everything) if not isinstance(cli.config.seed_everything, bool) else 0
    train, holdout = split_dataset(datamodule.dataset, cli.config.holdout, seed)
    check_ks(ks, len(train), len(holdout))
    batch_size = datamodule.batch_size
    train_data = datamodule_of(train, batch_size, name=f"{getattr(datamodule, 'name', 'data')}_train")
    one_device = {"devices": 1, "num_nodes": 1, "strategy": "auto"}

    pretraining = cli.config_init["pretrain"]
    if cli.model.hparams.pretrained:
        load_encoder_weights(pretraining.encoder, cli.model.hparams.pretrained)
        if cli.model.decoder is not None:
            load_encoder_weights(pretraining.decoder, cli.model.hparams.pretrained, prefix="decoder")
    else:
        pretrainer = cli.instantiate_trainer(
            max_steps=pretraining.total_steps,
            max_epochs=-1,
            callbacks=pretraining_callbacks(cli.trainer),
            logger=TensorBoardLogger(save_dir=cli.log_root(), name="select_k_pretrain"),
            **one_device,
        )
        pretrainer.fit(pretraining, datamodule=train_data)
        if pretrainer.checkpoint_callback and pretrainer.checkpoint_callback.best_model_path:
            rank_zero_info(f"pretrained autoencoder (training split): {pretrainer.checkpoint_callback.best_model_path}")

    model = cli.model
    settings = {k: v for k, v in model.hparams.items() if k not in _OWN and not k.startswith("_")}
    callbacks = dec_callbacks(cli)

    def build_module(encoder: nn.Module, k: int) -> L.LightningModule:
        decoder = copy.deepcopy(pretraining.decoder) if model.decoder is not None else None
        return type(model)(
            encoder=encoder,
            decoder=decoder,
            augment=model.augment,
            optimizer=model.optimizer_factory,
            n_clusters=k,
            **settings,
        )

    def build_trainer(k: int) -> L.Trainer:
        return cli.instantiate_trainer(
            callbacks=copy.deepcopy(callbacks),
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            **one_device,
        )

    if cli.config.output_dir is not None:
        logger = TensorBoardLogger(save_dir=cli.config.output_dir, name="", version="")
    else:
        logger = TensorBoardLogger(save_dir=cli.log_root(), name="select_k")
    result: SelectKResult = select_k(
        ks,
        train,
        holdout,
        pretraining.encoder,
        build_module,
        build_trainer,
        batch_size=batch_size,
        seed=seed,
        silhouette_samples=cli.config.silhouette_samples,
        logger=logger,
        csv_path=f"{logger.log_dir}/{CSV_FILE}",
        report=print,
    )
    cli.result = result
    print(result.table())
    print(
        f"select-k table: {result.csv_path} ({len(train)} training, {len(holdout)} held-out samples, "
        f"{time.perf_counter() - start:.0f}s)"
    )
    print(result.summary())
    return cli
