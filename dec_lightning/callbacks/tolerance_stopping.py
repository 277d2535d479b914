"""Stop clustering once the hard assignments settle (DEC sec. 4.3)."""

from __future__ import annotations

from typing import Any

import lightning as L


class ToleranceStopping(L.Callback):
    """Stop when fewer than ``tol`` of the samples changed cluster between two refreshes of P.

    Reads the label change the module computed at the latest refresh, so it works in any
    order relative to `TargetDistributionRefresh`. The decision is reduced over ranks:
    under DDP all processes stop at the same step.

    Args:
        tol: fraction of changed labels below which training stops (paper: 0.001).
    """

    def __init__(self, tol: float = 0.001) -> None:
        if not 0 <= tol < 1:
            raise ValueError(f"tol must be in [0, 1), got {tol}")
        self.tol = tol
        self._seen_refreshes = 0
        self.stopped_step: int | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if pl_module.refresh_count == self._seen_refreshes:
            return
        self._seen_refreshes = pl_module.refresh_count
        # the first refresh has no earlier refresh to compare with
        settled = pl_module.refresh_count >= 2 and pl_module.delta_label < self.tol
        if trainer.strategy.reduce_boolean_decision(settled, all=False):
            trainer.should_stop = True
            self.stopped_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        # a resumed run must not judge the refresh it already judged before the checkpoint
        return {"seen_refreshes": self._seen_refreshes, "stopped_step": self.stopped_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._seen_refreshes = state_dict["seen_refreshes"]
        self.stopped_step = state_dict["stopped_step"]
