"""``python -m rho_actors`` is the ``rho-actors`` command."""

import sys

from .cli import main

sys.exit(main())
