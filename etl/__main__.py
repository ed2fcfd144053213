"""`python -m etl` is the `runwatch` command."""

import sys

from etl.cli import main

sys.exit(main())
