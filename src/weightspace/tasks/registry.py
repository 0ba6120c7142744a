"""The tasks the command line knows: ``weightspace train COMMAND`` and ``weightspace evaluate``.

A new task is one module (a :class:`~weightspace.tasks.base.Task` subclass and its config) and
one entry in :data:`TASKS`, or a call to :func:`register` before the parser is built.
"""

from __future__ import annotations

from weightspace.tasks.base import Task
from weightspace.tasks.generalization import Generalization
from weightspace.tasks.inr_classification import InrClassification
from weightspace.tasks.inr_editing import InrEditing
from weightspace.tasks.tickets import Tickets

__all__ = ["TASKS", "get", "register"]

#: Task name (``"task"`` in ``RUN/config.json``) → task.
TASKS: dict[str, type[Task]] = {
    task.name: task for task in (Generalization, InrClassification, InrEditing, Tickets)
}


def register(task: type[Task]) -> type[Task]:
    """Add ``task`` (usable as a class decorator); refuses a name or command already taken."""
    for other in TASKS.values():
        if other is not task and (other.name == task.name or other.command == task.command):
            raise ValueError(f"register: a task named {task.name!r} / {task.command!r} exists")
    TASKS[task.name] = task
    return task


def get(name: object) -> type[Task]:
    """The task of that name; ``ValueError`` naming the known ones otherwise."""
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(
            f"task {name!r} is not one weightspace knows (expected one of {tuple(TASKS)})"
        )
    return TASKS[name]
