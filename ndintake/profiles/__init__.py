"""The intake protocols, each a :class:`~ndintake.core.profile.Profile` the core reads
bodies with: APM Server's intake (v2 and RUM v3 envelopes, ``apm/``), Datadog's
product analytics (``datadog/``), the JSON items reader they and schema profiles
share (``items.py``), and profiles from the user's own JSON Schemas
(``custom.py``). ``base.py`` defines the built-in ``apm``, ``rum`` and
``prodlytics`` profiles and registers them when this package is imported."""

from . import base as base
from .custom import define_profile as define_profile, profile_from_directory as profile_from_directory
