"""The effect handlers of a stage that may meet bounces and survey scores.

:data:`EFFECTS` is the rules' and the domain's handlers plus the outbound
stage's own: a delivery report is stored and matched to the mail of ours it is
about (:func:`mailcase.outbound.bounces.record_bounce`), a survey reply's score
is recorded (:func:`mailcase.outbound.surveys.record_survey`).  The daemon, the
CLI and the cutoff pass it to the classify stage.
"""

from __future__ import annotations

from mailcase.outbound.bounces import record_bounce
from mailcase.outbound.surveys import record_survey
from mailcase.rules.effects import RecordBounce, RecordSurvey
from mailcase.rules.record import BASE_EFFECTS, EffectHandlers

EFFECTS: EffectHandlers = {**BASE_EFFECTS, RecordBounce: record_bounce, RecordSurvey: record_survey}
