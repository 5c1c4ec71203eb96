"""Command line: ``python -m aiplat_train --spec run.json``.

Exit codes: 0 finished (or stopped by SIGTERM after saving a checkpoint), 2 a spec or data
problem (an ``error`` line names the field), 1 anything unexpected (traceback on stderr).
"""
import argparse
import os
import sys
import traceback

from . import events
from .spec import SpecError, load_spec


def main(argv=None):
    parser = argparse.ArgumentParser(prog="aiplat_train", description="Train a causal language model from a run spec.")
    parser.add_argument("--spec", required=True, help="path of the run spec (JSON)")
    args = parser.parse_args(argv)
    events.set_rank(int(os.environ.get("RANK", "0")))
    # stdout is the protocol and stderr the log: no download or save progress bars in either.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        spec = load_spec(args.spec)
        # Imported late: torch and transformers take seconds, and spec errors should not wait for them.
        from .trainer import train

        train(spec)
        return 0
    except SpecError as e:
        events.error(str(e), field=e.field)
        return 2
    except Exception as e:  # noqa: BLE001 - the last line of defence: say what failed, as a protocol line
        traceback.print_exc(file=sys.stderr)
        events.error(f"{type(e).__name__}: {e}", every_rank=True)
        return 1
