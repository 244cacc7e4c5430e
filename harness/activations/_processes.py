"""The processes of an `accelerate launch` run (or just this one): split rows, gather results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Processes:
    """This process's place among the launched ones; one process when there is no launcher."""

    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main(self) -> bool:
        return self.process_index == 0

    def split(self, rows: np.ndarray) -> np.ndarray:
        """This process's contiguous share of `rows` (the first ones get one more when uneven)."""
        from accelerate import PartialState

        # accelerate's own split, run on our (index, count) so that a test can play any process.
        with PartialState.split_between_processes(self, rows.tolist()) as share:
            return np.asarray(share, dtype=rows.dtype)

    def gather(self, part: Any) -> list[Any]:
        """Every process's `part`, in process order."""
        if self.num_processes == 1:
            return [part]
        from accelerate.utils import gather_object

        return gather_object([part])

    def wait(self) -> None:
        if self.num_processes > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def current_processes() -> Processes:
    """The accelerate process group of this run; a single process when not launched by accelerate."""
    import torch
    from accelerate import PartialState

    # Without a GPU, processes started by `accelerate launch` / torchrun talk over gloo (multi-CPU).
    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(process_index=state.process_index, num_processes=state.num_processes)
