"""Task registry: `TASKS[name]` / `get_task(name)`. Importing this package registers every task."""
from deepthink.tasks.base import TASKS, Split, Task, get_task, register
from deepthink.tasks import prefix_sums  # noqa: F401  (registers)

try:   # registered as their modules land; see deepthink/tasks/*.py
    from deepthink.tasks import mazes  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from deepthink.tasks import chess  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["TASKS", "Split", "Task", "get_task", "register"]
