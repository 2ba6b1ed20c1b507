"""`python -m tfsp.cli`: the `tfsp` command."""

import sys

from tfsp.cli import main

sys.exit(main())
