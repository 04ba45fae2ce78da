"""``python -m engine.cli``: the ``kassasync`` command."""

import sys

from engine.cli.main import main

sys.exit(main())
