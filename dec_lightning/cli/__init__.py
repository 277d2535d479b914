"""The ``dec-lightning`` command line, built on LightningCLI."""

from dec_lightning.cli.main import DECLightningCLI, main, run_cli

__all__ = ["DECLightningCLI", "main", "run_cli"]
