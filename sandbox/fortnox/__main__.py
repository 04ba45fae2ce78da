"""``python -m sandbox.fortnox``: the same as ``kassasync sandbox``."""

import sys

from sandbox.fortnox.cli import main

sys.exit(main())
