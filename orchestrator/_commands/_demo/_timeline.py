"""The demo's readable timeline: one line per step, with the time since start and whether it behaved."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

__all__ = ["Timeline"]


class Timeline:
    """Prints steps as they happen and remembers every step that did not behave as shown."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self._clock = clock
        self._start = clock()
        self.failures: list[str] = []

    def _at(self) -> str:
        return f"[dim]+{self._clock() - self._start:6.2f}s[/dim]"

    def section(self, title: str) -> None:
        self.console.print(f"\n[bold cyan]{escape(title)}[/bold cyan]")

    def step(self, title: str, detail: str = "", *, ok: bool = True) -> None:
        mark = "[green]✓[/green]" if ok else "[bold red]✗[/bold red]"
        line = f"{self._at()} {mark} [bold]{escape(title)}[/bold]"
        if detail:
            line += f"  [dim]{escape(detail)}[/dim]"
        self.console.print(line)
        if not ok:
            self.failures.append(title)

    def check(self, ok: bool, title: str, detail: str = "") -> bool:
        self.step(title, detail, ok=ok)
        return ok

    def say(self, who: str, text: str) -> None:
        colour = {"caller": "yellow", "agent": "magenta", "tool": "blue"}.get(who, "white")
        self.console.print(f"{self._at()}   [{colour}]{escape(who):>6}[/{colour}] {escape(text)}")
