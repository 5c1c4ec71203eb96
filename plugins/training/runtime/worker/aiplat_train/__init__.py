"""aiplat's training worker: trains a causal language model from a JSON run spec.

Run as ``python -m aiplat_train --spec run.json`` (one process) or under ``torchrun`` (several).
It writes JSON lines on stdout that the core's scheduler turns into metric series and that the
training plugin reads for checkpoints and the finished model; see README.md next to this package.
"""

__version__ = "0.1.0"
