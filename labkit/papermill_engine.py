"""papermill's nbclient engine, saving the notebook it runs into at most every few seconds.

papermill writes the whole output notebook at the run's start, at each cell's start and end, and at the end.
Each write serialises the notebook with ``indent=1`` (json's pure-Python encoder: the C one takes no indent),
deep-copies and validates it: for notebook 03 (84 code cells, ~115 KB) 171 writes took 5.2 of the run's
8.5 s of papermill's CPU on the host, and inside the emulated AMD-V machine, where Python runs ~17 times
slower, a fifth of every short cell's time.  Here a run's output still fills in as it goes — saved at the
start, then at a cell's start or end once :data:`SAVE_EVERY_S` has passed since the last save (and, as
papermill does, while a long cell prints) — and it is whole at the end: the run's end is always saved (an
interrupted run keeps what ran), and papermill writes the finished notebook after the engine returns.
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

#: The name runner.run_one asks papermill for.
NAME = "labkit"
#: The shortest time between two saves of a running notebook (the run's first and last are always saved);
#: also how often a long cell's output is saved (papermill's ``autosave_cell_every``, 30 s by default).
SAVE_EVERY_S = 5


class ThrottledSaves(NotebookExecutionManager):
    """papermill's execution state, whose ``save`` writes only when the last write is SAVE_EVERY_S old."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._must_save = True  # the run's first save, and its last (notebook_complete)

    def save(self, **kwargs: Any) -> None:
        if "nb" in kwargs:  # what papermill's catch_nb_assignment does, also when no write follows
            self.nb = kwargs["nb"]
        due = (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_S
        if self._must_save or due:
            self._must_save = False
            super().save(**kwargs)

    def notebook_complete(self, **kwargs: Any) -> None:
        self._must_save = True
        super().notebook_complete(**kwargs)


class ThrottledSavesEngine(NBClientEngine):
    """nbclient's engine with :class:`ThrottledSaves` in place of papermill's NotebookExecutionManager.

    The body is papermill's ``Engine.execute_notebook`` (2.x), which names its manager class inline.
    """

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = True, log_output: bool = False, autosave_cell_every: int = 30,
                         **kwargs: Any) -> Any:
        nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(NAME, ThrottledSavesEngine)
