"""The worker's JSON-line protocol on stdout.

Every line the core reads is a JSON object with a ``type``: ``metric`` (becomes a metric point),
``event`` (started, checkpoint, stopped, finished) or ``error``. In a distributed run only rank 0
speaks, so each metric is stored once; other ranks stay silent on stdout (their stderr still
reaches the workload's logs).
"""
import json
import math
import os
import sys

_rank = int(os.environ.get("RANK", "0"))


def set_rank(rank):
    global _rank
    _rank = rank


def _clean(value):
    # NaN and infinity are not JSON; a diverged loss is reported as null rather than breaking the line.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(kind, **fields):
    """Print one protocol line (rank 0 only), flushed at once so the scheduler sees it live."""
    if _rank != 0:
        return
    line = {"type": kind}
    line.update({k: _clean(v) for k, v in fields.items() if v is not None})
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def metric(**fields):
    emit("metric", **fields)


def event(name, **fields):
    emit("event", event=name, **fields)


def error(message, field=None, every_rank=False):
    """Print an error line. Spec errors are the same on every rank, so rank 0 says it once; an
    unexpected failure is printed by whichever rank hit it (``every_rank``)."""
    if _rank != 0 and not every_rank:
        return
    line = {"type": "error", "message": message}
    if field:
        line["field"] = field
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
