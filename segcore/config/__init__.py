"""Typed specifications, validated once at the edge. Errors name the field, the bad value and what
is valid. Nothing here imports a layer above ``config``.

* :mod:`.trial` — one trial (:class:`TrialConfig`).
* :mod:`.sweep` — a whole sweep (:class:`~segcore.config.sweep.SweepSpec`, ``load_sweep_spec``).
* :mod:`.knobs` — the search space: one :class:`~segcore.config.knobs.Knob` per ``space`` entry.
* :mod:`.checks` — the checks a sweep spec's own fields allow, gathered in one ``SweepSpecError``.
"""

from .trial import TrialConfig, format_validation_error

__all__ = ["TrialConfig", "format_validation_error"]
