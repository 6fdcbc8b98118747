"""``python -m segcore``: the same command line as the ``segcore`` script."""

import sys

from segcore.cli import main

sys.exit(main())
