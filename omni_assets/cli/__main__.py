"""``python -m omni_assets.cli``: the same as the ``omni-assets`` command."""

import sys

from . import main

sys.exit(main())
