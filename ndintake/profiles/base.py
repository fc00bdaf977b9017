"""The built-in profiles, ``apm``, ``rum`` and ``prodlytics``, defined through the
public API (:class:`~ndintake.core.profile.Profile` and :func:`define_profile`) and
registered by name."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from ..core.event import Event, set_expansion
from ..core.limits import Limits
from ..core.profile import PROFILES, Profile, register
from ..core.schemas import Validator
from .apm.envelope import EnvelopeReader
from .apm.isset import rewrite
from .apm.response import apm_response
from .apm.rumv3 import expand_event, is_internal_metricset, keeps_metricset
from .custom import define_profile

__all__ = ["APM", "PRODLYTICS", "PRODLYTICS_MAX_BODY_SIZE", "PROFILES", "RUM"]


def _metricset(value: dict[str, Any], line: bytes, line_no: int, out: list[Event]) -> int:
    """A v2 metricset: dropped (counted, no error) when it has transaction fields
    set and ``keeps_metricset`` says no."""
    if is_internal_metricset(value) and not keeps_metricset(value, short=False):
        return 1
    out.append(Event("metricset", value, line, line_no))
    return 0


def _rumv3_transaction(value: dict[str, Any], line: bytes, line_no: int, out: list[Event]) -> int:
    """A RUM v3 ``x`` line: the transaction, one span per ``y`` element, and the
    ``me`` metricsets worth keeping; all abbreviated, spans and metricsets with
    the transaction as their parent."""
    out.append(Event("transaction", value, line, line_no, True))
    for span in value.get("y") or ():
        out.append(Event("span", span, line, line_no, True, value))
    dropped = 0
    for metricset in value.get("me") or ():
        if keeps_metricset(metricset):
            out.append(Event("metricset", metricset, line, line_no, True, value))
        else:
            dropped += 1
    return dropped


#: Datadog's documented limit for one prodlytics request: 5 MB uncompressed.
PRODLYTICS_MAX_BODY_SIZE = 5_000_000

_V2_KINDS = ("transaction", "span", "error", "metricset", "log")

#: A validator that decides as APM Server's Go decoders do: nested objects
#: validated only when set, integers written as floats refused.
_go_decoded = partial(Validator, prepare=rewrite, strict_integers=True)

APM = Profile(
    name="apm",
    reader=EnvelopeReader,
    render=apm_response,
    metadata={
        "metadata": _go_decoded("metadata", "apm/metadata"),
        "m": _go_decoded("metadata", "rumv3/metadata", label="m"),
    },
    events={
        **{kind: _go_decoded(kind, f"apm/{kind}") for kind in _V2_KINDS},
        "x": _go_decoded("transaction", "rumv3/transaction", label="x"),
        "e": _go_decoded("error", "rumv3/error", label="e"),
    },
    special={"metricset": _metricset, "x": _rumv3_transaction},
    abbreviated=frozenset({"m", "x", "e"}),
)

#: The RUM routes (/intake/v2/rum/events, /intake/v3/rum/events): APM Server
#: reads them exactly like the backend route, v2 and v3 keys in any mix.
RUM = replace(APM, name="rum")

PRODLYTICS = define_profile(
    "prodlytics",
    # the package's schema, compiled on first use (a Validator: no file to name)
    {"prodlytics": Validator("prodlytics", "prodlytics", label=None)},
    classify=None,
    # no per-item limit is published: an item may be the whole body, never more
    limits=Limits(max_event_size=PRODLYTICS_MAX_BODY_SIZE + 1, max_body_size=PRODLYTICS_MAX_BODY_SIZE),
    response="datadog",
)

for _profile in (APM, RUM, PRODLYTICS):
    register(_profile)
set_expansion(expand_event)  # RUM v3 events are the abbreviated ones
