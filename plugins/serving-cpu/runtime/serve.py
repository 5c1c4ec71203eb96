"""The CPU runtime's launcher: `transformers serve` pinned to one local model folder.

Usage: python serve.py --model PATH --name NAME --state-dir DIR [--dtype auto|float32|bfloat16]
                       [--seed N] [--threads N] [--log-level warning]

- The port comes from `$PORT` (the local executor passes it only in the environment; argv is never
  run through a shell), the host is 127.0.0.1.
- The model is preloaded before the server binds its port (`transformers serve`'s `force_model`), so
  `GET /health` answers 200 only once the model is in memory: it is the readiness path.
- The engine knows the model by NAME (`<model folder>@main`: `transformers serve` canonicalises a
  model id to `id@revision` and answers with that id), so requests must carry `"model": NAME` (or no
  model) and answers carry it back; the serving plugin's `/v1` alias swaps it with the served name.
- Nothing is downloaded and nothing is written outside DIR: HF_HOME, the hub and torch caches point
  into it and the hub is offline.
- Streams get the `data: [DONE]` line OpenAI clients expect (transformers serve ends them without it).
"""
import argparse
import os
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model folder (Hugging Face format)")
    parser.add_argument("--name", required=True, help="the model id the engine uses: MODEL@main")
    parser.add_argument("--state-dir", required=True, help="where caches go (the revision folder)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def isolate(state_dir):
    """Point every cache into the revision folder and keep the hub offline (set before any import)."""
    cache = os.path.join(state_dir, "cache")
    hf_home = os.path.join(cache, "huggingface")
    for var, value in {
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": os.path.join(hf_home, "hub"),
        "HF_XET_CACHE": os.path.join(hf_home, "xet"),
        "XDG_CACHE_HOME": cache,
        "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "torchinductor"),
        "TRITON_CACHE_DIR": os.path.join(cache, "triton"),
    }.items():
        os.environ[var] = value
    # `GET /v1/models` scans the hub cache and answers 500 when it does not exist.
    os.makedirs(os.environ["HF_HUB_CACHE"], exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class StreamDone:
    """ASGI middleware: ends every `text/event-stream` answer with `data: [DONE]` (once)."""

    DONE = b"data: [DONE]\n\n"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"sse": False, "tail": b""}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        state["sse"] = True
            elif message["type"] == "http.response.body" and state["sse"]:
                body = message.get("body", b"")
                if body:
                    state["tail"] = (state["tail"] + body)[-64:]
                if not message.get("more_body", False) and not state["tail"].rstrip().endswith(b"[DONE]"):
                    message = {**message, "body": body + self.DONE}
            await send(message)

        return await self.app(scope, receive, wrapped)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    port = os.environ.get("PORT")
    if not port or not port.isdigit():
        sys.exit("serve.py: $PORT is not set (the executor gives the replica's port in $PORT)")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"serve.py: {args.model} is not a Hugging Face model folder (no config.json)")
    isolate(os.path.abspath(args.state_dir))
    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from transformers.cli import serve as serve_cli
    from transformers.cli.serving import server as server_module

    build_server = server_module.build_server

    def build_with_done(*a, **kw):
        app = build_server(*a, **kw)
        app.add_middleware(StreamDone)
        return app

    # `Serve` imports build_server from this module when it is constructed.
    server_module.build_server = build_with_done

    print(f"serve.py: loading {args.model} as {args.name!r} (dtype {args.dtype}), then serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    serve_cli.Serve(
        force_model=args.name,
        device="cpu",
        dtype=args.dtype,
        host="127.0.0.1",
        port=int(port),
        log_level=args.log_level,
        default_seed=args.seed,
    )


if __name__ == "__main__":
    main()
