"""Launcher for one node of a run: ``python -m aiplat_train.launch --nproc-per-node P -- train.py --spec S``.

A run of N nodes is one gang-placed workload of N replicas. The core's scheduler gives every
replica ``WORLD_SIZE`` (the number of replicas, i.e. nodes), ``RANK`` (this replica's index),
``MASTER_ADDR`` (replica 0's node) and ``MASTER_PORT`` (a port it reserved for the gang). This
launcher turns them into torchrun's static rendezvous on each node::

    torchrun --nnodes N --node_rank RANK --master_addr MASTER_ADDR --master_port MASTER_PORT \
             --nproc_per_node P train.py --spec S

torchrun then sets the per-process ``WORLD_SIZE`` (N x P), ``RANK`` and ``LOCAL_RANK`` the worker
reads. With one node (no gang) it is ``torchrun --standalone``, which picks a free port itself.
"""
import argparse
import os
import sys


def torchrun_args(nproc_per_node, script, env):
    nodes = int(env.get("WORLD_SIZE", "1") or "1")
    if nodes <= 1:
        head = ["--standalone", "--nnodes", "1"]
    else:
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if missing:
            raise SystemExit(f"aiplat_train.launch: a {nodes}-node run needs {', '.join(missing)} from the scheduler")
        head = [
            "--nnodes", str(nodes),
            "--node_rank", env["RANK"],
            "--master_addr", env["MASTER_ADDR"],
            "--master_port", env["MASTER_PORT"],
            "--rdzv_backend", "static",
        ]
    return head + ["--nproc_per_node", str(nproc_per_node)] + list(script)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="aiplat_train.launch", description="Start torchrun for this node of a (multi-node) run.")
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- train.py --spec run.json")
    args = parser.parse_args(argv)
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("give the worker's script after --")
    argv = [sys.executable, "-m", "torch.distributed.run"] + torchrun_args(args.nproc_per_node, script, os.environ)
    print("aiplat_train.launch: " + " ".join(argv[1:]), file=sys.stderr, flush=True)
    # torchrun sets the per-process ranks; the gang's own (node) values must not leak into them.
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    main()
