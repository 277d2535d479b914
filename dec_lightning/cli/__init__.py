"""The ``dec-lightning`` command line, built on LightningCLI."""

from dec_lightning.cli.common import DECLightningCLI
from dec_lightning.cli.main import main, run_cli

__all__ = ["DECLightningCLI", "main", "run_cli"]
