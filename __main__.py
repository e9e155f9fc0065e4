"""``python3 -m streaming_mosaic``: the command line (no QGIS needed)."""

import sys

from streaming_mosaic.cli import main

sys.exit(main())
