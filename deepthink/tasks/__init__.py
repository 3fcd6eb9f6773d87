"""Task registry: `TASKS[name]` / `get_task(name)`. Importing this package registers every task."""
from deepthink.tasks.base import TASKS, Split, Task, get_task, register
from deepthink.tasks import chess, mazes, prefix_sums  # noqa: F401  (each module registers its task)

__all__ = ["TASKS", "Split", "Task", "get_task", "register"]
