"""The intake protocols: APM Server's intake (v2 and RUM v3, ``apm/``), Datadog's
product analytics items (``datadog/``), and profiles from the user's own JSON
Schemas (``custom.py``). Importing this package registers the built-in profiles
``apm``, ``rum`` and ``prodlytics`` with the core."""

from . import base as base
from .custom import define_profile as define_profile, profile_from_directory as profile_from_directory
