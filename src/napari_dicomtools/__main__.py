"""``python -m napari_dicomtools`` is the ``dicomtools`` command line."""

import sys

from .cli import main

sys.exit(main())
