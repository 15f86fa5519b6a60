"""What became of an upload, as both engines and the tools that watch them see it.

An engine reports each outcome object (a result or a failure) as a :class:`Completion`;
its watchers (the local engine's event log, a deployed stack's results bucket) implement
:class:`CompletionSource`. An :class:`Outcome` is the terminal state of one upload, decided
by those objects, never by execution status. These types sit next to the ports so that the
engines and the tools above them share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from radstream.layout import failure_key, outcome_kind, result_key, sidecar_key_for
from radstream.stages.outcomes import unvalidated_outcome_ids

OutcomeStatus = Literal["succeeded", "failed", "lost"]


@dataclass(frozen=True)
class Completion:
    """An outcome object for the upload whose sidecar key is ``sidecar_key``."""

    sidecar_key: str
    kind: str  # "result" or "failure", as radstream.layout.outcome_kind names them
    at: float  # epoch seconds, when the outcome object was created (or first seen)
    outcome_key: str | None = None
    """The outcome object's own key. ``sidecar_key`` is derived from it by the layout's
    rule, which a DICOM uploaded without a sidecar does not follow: its outcome lands under
    its header's study, and the object's own ``sidecar_key`` field names the upload."""


def completion_of(outcome_key: str, at: float) -> Completion | None:
    """The completion that the outcome object ``outcome_key`` reports; None for other keys."""
    kind = outcome_kind(outcome_key)
    sidecar = sidecar_key_for(outcome_key)
    if kind is None or sidecar is None:
        return None
    return Completion(sidecar, kind, at, outcome_key)


def outcome_key_of(sidecar_key: str, kind: str) -> str:
    """Where the ``kind`` ("result" or "failure") outcome of an upload lands."""
    folder, stem = unvalidated_outcome_ids(sidecar_key)
    return result_key(folder, stem) if kind == "result" else failure_key(folder, stem)


class CompletionSource(Protocol):
    """Something that reports finished uploads (an engine's outcome objects)."""

    def poll(self) -> list[Completion]:
        """Completions since the last call."""
        ...


@dataclass(frozen=True)
class Outcome:
    """The terminal outcome of one upload."""

    sidecar_key: str
    status: OutcomeStatus
    error_code: str | None
    created_at: float | None
    finished_at: float | None
    outcome_key: str | None = None
    """The outcome object's key where the engine knows it (a DICOM uploaded without a
    sidecar lands under its header's study, not its upload folder); else derived."""

    @property
    def object_key(self) -> str | None:
        """Where the outcome object is: the engine's word, else the layout's rule."""
        if self.status == "lost":
            return None
        kind = "result" if self.status == "succeeded" else "failure"
        return self.outcome_key or outcome_key_of(self.sidecar_key, kind)

    @property
    def latency_s(self) -> float | None:
        """Upload (sidecar created) to outcome recorded, in seconds."""
        if self.created_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.created_at
