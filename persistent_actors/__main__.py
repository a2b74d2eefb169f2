"""``python -m persistent_actors``: the same as the ``persistent-actors`` console script."""

import sys

from persistent_actors.cli import main

sys.exit(main())
