"""The conversion report: every attribute that did not map one to one, with where it is.

Each note says what happened to one place of the compose file: ``changed`` (mapped, but not
quite the same behaviour), or ``dropped`` (no Kubernetes equivalent, left out, with the reason).
Places are found with the loader's own position map (:func:`composer.manifest.tree.locate` on
the located tree), so a note reads like a loader warning: ``FILE:LINE:COL: path: message``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from composer.errors import Loc
from composer.manifest.tree import Path, dotted

Verdict = Literal["changed", "dropped"]
#: Where a dotted path of the project is written (None when the project has no positions).
Locate = Callable[[Path], "Loc | None"]


def nowhere(path: Path) -> Loc | None:
    """The locator of a project built without its files (the API, tests of the model)."""
    return None


@dataclass(frozen=True)
class Note:
    """One thing the conversion changed or dropped."""

    scope: str          # the service name, or "" for the project's top-level resources
    path: Path
    verdict: Verdict
    message: str
    loc: Loc | None = None
    hint: str | None = None

    def __str__(self) -> str:
        head = f"{self.loc}: " if self.loc else ""
        text = f"{head}{dotted(self.path)}: {self.verdict}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


@dataclass
class Report:
    """The notes of one conversion, in the order they were made, each one once."""

    where: Locate = nowhere
    notes: list[Note] = field(default_factory=list)

    def add(self, scope: str, path: Path, verdict: Verdict, message: str,
            hint: str | None = None) -> None:
        note = Note(scope, path, verdict, message, self.where(path), hint)
        if note not in self.notes:
            self.notes.append(note)

    def changed(self, scope: str, path: Path, message: str, hint: str | None = None) -> None:
        self.add(scope, path, "changed", message, hint)

    def dropped(self, scope: str, path: Path, message: str, hint: str | None = None) -> None:
        self.add(scope, path, "dropped", message, hint)

    @property
    def dropped_count(self) -> int:
        return sum(1 for n in self.notes if n.verdict == "dropped")

    def scopes(self) -> list[str]:
        """The scopes that have notes: the project first, then services by name."""
        return sorted({n.scope for n in self.notes})

    def render(self) -> str:
        """The report as text, grouped per service, each group in file order."""
        if not self.notes:
            return "kubernetes: every attribute converted\n"
        out = [f"kubernetes: {len(self.notes)} notes ({self.dropped_count} dropped)\n"]
        for scope in self.scopes():
            out.append(f"service {scope}:\n" if scope else "project:\n")
            notes = [n for n in self.notes if n.scope == scope]
            notes.sort(key=lambda n: (n.loc.file, n.loc.line, n.loc.column) if n.loc
                       else ("", 0, 0))
            out.extend(f"  {note}\n" for note in notes)
        return "".join(out)
