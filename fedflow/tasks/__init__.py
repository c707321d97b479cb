"""Registry of task kinds, looked up by the `task` a domain declares in its config.yaml."""

from fedflow.tasks.base import TaskKind
from fedflow.tasks.binary import BinaryTask
from fedflow.tasks.language import LanguageTask
from fedflow.tasks.multiclass import MulticlassTask
from fedflow.tasks.regression import RegressionTask

TASKS: dict[str, TaskKind] = {
    task.name: task for task in (BinaryTask(), MulticlassTask(), RegressionTask(), LanguageTask())
}

# Metrics where larger is better; every other metric (loss, rmse, mae) is minimised.
HIGHER_IS_BETTER = {"accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "macro_f1", "r2"}


def get_task(name: str) -> TaskKind:
    """The task kind called `name`, or an error listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["HIGHER_IS_BETTER", "TASKS", "TaskKind", "get_task"]
