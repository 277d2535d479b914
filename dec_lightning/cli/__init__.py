"""The ``dec-lightning`` command line, built on LightningCLI.

The entry point is the ``main`` module (its ``main`` and ``run_cli``); this package exports only the
CLI class, so that nothing in the package imports the entry point."""

from dec_lightning.cli.common import DECLightningCLI

__all__ = ["DECLightningCLI"]
