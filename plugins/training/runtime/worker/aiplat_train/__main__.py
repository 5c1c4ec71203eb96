"""Entry point: ``python -m aiplat_train --spec run.json``."""
import sys

from .cli import main

sys.exit(main())
