"""Registry of task kinds, looked up by the `task` a domain declares in its config.yaml."""

from fedflow.plugins import TASKS_GROUP, plugins
from fedflow.tasks.base import TABULAR, TEXT_GENERATION, FrozenBase, TaskKind
from fedflow.tasks.binary import BinaryTask
from fedflow.tasks.language import LanguageTask
from fedflow.tasks.multiclass import MulticlassTask
from fedflow.tasks.regression import RegressionTask

TASKS: dict[str, TaskKind] = {
    task.name: task for task in (BinaryTask(), MulticlassTask(), RegressionTask(), LanguageTask())
}
# An installed task kind is a class (instantiated here, like the built-in ones) or an instance.
TASKS.update(
    {
        name: kind() if isinstance(kind, type) else kind
        for name, kind in plugins(TASKS_GROUP, built_in=TASKS).items()
    }
)


def higher_is_better_metrics() -> frozenset[str]:
    """Metrics where larger is better in any task kind; every other metric (loss, rmse, …) is minimised."""
    return frozenset().union(*(task.higher_is_better for task in TASKS.values()))


HIGHER_IS_BETTER = higher_is_better_metrics()


def get_task(name: str) -> TaskKind:
    """The task kind called `name`, or an error listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = [
    "HIGHER_IS_BETTER",
    "TABULAR",
    "TASKS",
    "TEXT_GENERATION",
    "FrozenBase",
    "TaskKind",
    "get_task",
    "higher_is_better_metrics",
]
