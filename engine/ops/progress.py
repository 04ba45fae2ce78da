"""Progress bars for long operator jobs (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass
class ProgressHandle:
    """What :func:`progress` yields: ``advance()`` after each item, ``note()`` to say what."""

    _progress: Progress | None
    _task: Any
    done: int = 0
    notes: list[str] = field(default_factory=list)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def progress(
    total: int | None,
    description: str,
    *,
    console: Console | None = None,
    enabled: bool = True,
) -> Iterator[ProgressHandle]:
    """A rich progress bar on stderr for a long job::

        with progress(len(items), "retrying dead letters") as bar:
            for item in items:
                ...
                bar.advance()

    ``total=None`` shows a spinner without an end. With ``enabled=False`` (or when stderr is
    not a terminal and no ``console`` is given) nothing is drawn, but counting still works.
    """
    out = console or Console(stderr=True)
    if not enabled or (console is None and not out.is_terminal):
        yield ProgressHandle(None, None)
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield ProgressHandle(bar, task)
