"""``python -m weightspace``: the same command line as ``weightspace``."""

import sys

from weightspace.cli import main

sys.exit(main())
