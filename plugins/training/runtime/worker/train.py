"""Script entry for the worker: ``python plugins/training/runtime/worker/train.py --spec run.json``.

The same as ``python -m aiplat_train`` without needing the package on PYTHONPATH, which suits a
workload's argv and ``torchrun train.py``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiplat_train.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
