"""``python -m sensorlabel``: the command line."""

import sys

from sensorlabel.cli import main

sys.exit(main())
