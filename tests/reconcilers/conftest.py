"""Hypothesis profiles for the reconciler properties.

``HYPOTHESIS_PROFILE=debug`` skips the explain phase, so a failure prints its full falsifying
example (the actions to replay) instead of an abridged one.
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings

settings.register_profile(
    "debug", phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)
)
if os.environ.get("HYPOTHESIS_PROFILE") == "debug":
    settings.load_profile("debug")
