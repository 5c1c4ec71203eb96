"""Real runs of the training worker on a GPU (see README.md): every strategy, DeepSpeed ZeRO-2/3
(with CPU offload), SIGTERM and resume. Prints PASS / FAIL / SKIP / INFO lines and writes
``<out>/gpu-check.json``. ``--cpu`` runs the subset that works without CUDA, smaller (a dry run).
"""
import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import time

RESULTS = []
FAILED = []


def say(kind, name, detail=""):
    print(f"{kind} {name}{': ' + detail if detail else ''}", flush=True)
    if kind == "FAIL":
        FAILED.append(name)


def safetensors_dtypes(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sorted({v["dtype"] for k, v in header.items() if k != "__metadata__"})


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


class Checker:
    def __init__(self, args):
        self.args = args
        self.py = sys.executable
        self.work = os.path.join(args.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.data = os.path.join(self.work, "data")
        os.makedirs(self.data, exist_ok=True)
        words = "the cat sat on a mat and the dog ran to the park while birds sang in old green trees".split()
        with open(os.path.join(self.data, "corpus.txt"), "w") as f:
            for i in range(3000):
                f.write(" ".join(words[(i + j) % len(words)] for j in range(16)) + "\n")
        if args.cpu:
            self.config = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
            self.hyper = {"learningRate": 3e-3, "warmupSteps": 2, "maxSteps": 20, "batchSize": 16, "sequenceLength": 64, "evalSplit": 0.05, "evalInterval": 0, "checkpointInterval": 0, "seed": 1}
        else:
            self.config = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 512}
            self.hyper = {"learningRate": 1e-3, "warmupSteps": 10, "maxSteps": 80, "batchSize": 16, "sequenceLength": 256, "evalSplit": 0.05, "evalInterval": 0, "checkpointInterval": 0, "seed": 1}

    def run(self, name, strategy="single", precision="bf16", ds=None, method="full", model=None, resume=None, output=None, sigterm_at=None, timeout=300, hyper=None):
        out = output or os.path.join(self.work, name)
        spec = {
            "runId": name,
            "output": out,
            "model": model or {"from": "scratch", "template": "llama", "config": self.config},
            "tokenizer": None,
            "data": {"path": self.data, "format": "text"},
            "method": method,
            "hyper": {**self.hyper, "precision": precision, **(hyper or {})},
            "strategy": {"kind": strategy, **({"deepspeedConfig": os.path.join(self.args.configs, ds + ".json")} if ds else {})},
            "resumeFrom": resume,
        }
        spec_file = os.path.join(self.work, name + ".json")
        with open(spec_file, "w") as f:
            json.dump(spec, f)
        argv = [self.py, "-m", "aiplat_train.launch", "--nproc-per-node", "1", "--", "train.py", "--spec", spec_file]
        if strategy == "single":
            argv = [self.py, "train.py", "--spec", spec_file]
        err_path = os.path.join(self.args.out, name + ".stderr.txt")
        started = time.time()
        lines = []
        with open(err_path, "w") as err:
            proc = subprocess.Popen(argv, cwd=self.args.worker, stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
            signalled = False
            try:
                for text in proc.stdout:
                    if time.time() - started > timeout:
                        os.killpg(proc.pid, signal.SIGKILL)
                        break
                    if not text.startswith("{"):
                        continue
                    line = json.loads(text)
                    lines.append(line)
                    if sigterm_at and not signalled and line.get("type") == "metric" and line.get("step", 0) >= sigterm_at:
                        os.killpg(proc.pid, signal.SIGTERM)
                        signalled = True
                proc.wait(timeout=max(5, timeout - (time.time() - started)))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        elapsed = time.time() - started
        losses = [(l["step"], l["loss"]) for l in lines if l.get("type") == "metric" and isinstance(l.get("loss"), (int, float))]
        tps = [l["tokens_per_s"] for l in lines if l.get("type") == "metric" and l.get("tokens_per_s")]
        events = {l["event"]: l for l in lines if l.get("type") == "event"}
        errors = [l for l in lines if l.get("type") == "error"]
        with open(err_path) as f:
            tail = f.read()[-1500:]
        result = {"name": name, "rc": proc.returncode, "seconds": round(elapsed, 1), "steps": [s for s, _ in losses], "losses": [v for _, v in losses],
                  "tokensPerS": round(mean(tps[3:]) if len(tps) > 3 else mean(tps), 1), "events": list(events), "errors": errors, "output": out}
        RESULTS.append(result)
        return result, events, tail

    def falls(self, name, r, tail, factor=0.7):
        first, last = mean(r["losses"][:8]), mean(r["losses"][-8:])
        ok = r["rc"] == 0 and "finished" in r["events"] and last < factor * first
        say("PASS" if ok else "FAIL", name, f"rc {r['rc']}, {len(r['steps'])} steps in {r['seconds']} s, loss {first:.3f} -> {last:.3f}, {r['tokensPerS']} tokens/s" + ("" if ok else f"; errors {r['errors']}; stderr: {tail[-800:]}"))
        return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--configs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None}
    try:
        import deepspeed

        info["deepspeed"] = deepspeed.__version__
    except Exception as e:  # noqa: BLE001
        info["deepspeed"] = f"not importable: {e}"
    import transformers

    info["transformers"] = transformers.__version__
    say("INFO", "environment", json.dumps(info))
    if not cuda and not args.cpu:
        say("FAIL", "cuda", "torch sees no CUDA device (use --cpu for a dry run)")
        return 2
    c = Checker(args)
    only = set(filter(None, args.only.split(",")))
    want = lambda name: not only or name in only  # noqa: E731
    bf16 = "fp32" if args.cpu else "bf16"

    if want("single"):
        r, ev, tail = c.run("single-" + bf16, precision=bf16)
        c.falls("single process, " + bf16, r, tail)
    if want("fp16"):
        if cuda:
            r, ev, tail = c.run("single-fp16", precision="fp16")
            c.falls("single process, fp16 with a gradient scaler", r, tail)
        else:
            say("SKIP", "fp16", "needs CUDA")
    if want("ddp"):
        r, ev, tail = c.run("ddp", strategy="ddp", precision=bf16)
        c.falls("DDP under torchrun" + (" (NCCL)" if cuda else " (gloo)"), r, tail)
    if want("fsdp"):
        r, ev, tail = c.run("fsdp", strategy="fsdp", precision=bf16)
        c.falls("FSDP under torchrun", r, tail)
    if args.cpu:
        # The configs were made for bf16; a CPU dry run trains in fp32.
        for name in ("zero2", "zero3", "zero3-offload"):
            with open(os.path.join(args.configs, name + ".json")) as f:
                cfg = json.load(f)
            cfg["bf16"] = {"enabled": False}
            cfg["zero_optimization"].pop("offload_optimizer", None)
            cfg["zero_optimization"].pop("offload_param", None)
            os.makedirs(os.path.join(args.out, "cpu-configs"), exist_ok=True)
            with open(os.path.join(args.out, "cpu-configs", name + ".json"), "w") as f:
                json.dump(cfg, f)
        args.configs = os.path.join(args.out, "cpu-configs")
    if want("zero2"):
        r, ev, tail = c.run("zero2", strategy="deepspeed", ds="zero2", precision=bf16)
        if c.falls("DeepSpeed ZeRO-2, " + bf16, r, tail):
            dtypes = safetensors_dtypes(os.path.join(r["output"], "final", "model.safetensors"))
            want_dtype = "BF16" if bf16 == "bf16" else "F32"
            say("PASS" if dtypes == [want_dtype] else "FAIL", "ZeRO-2 final weights' dtype", f"{dtypes}")
    if want("zero3"):
        full, ev, tail = c.run("zero3", strategy="deepspeed", ds="zero3", precision=bf16)
        c.falls("DeepSpeed ZeRO-3, " + bf16, full, tail)
        total = full["steps"][-1] if full["steps"] else 0
        at = max(3, total // 3)
        stop, ev, tail = c.run("zero3-stop", strategy="deepspeed", ds="zero3", precision=bf16, sigterm_at=at)
        cp = ev.get("stopped", {}).get("checkpoint")
        ok = cp is not None and os.path.isdir(os.path.join(cp or "", "deepspeed"))
        say("PASS" if ok else "FAIL", "ZeRO-3 SIGTERM: checkpoint with the ZeRO partitions, clean stop", f"stopped at step {ev.get('stopped', {}).get('step')}, rc {stop['rc']}, checkpoint {cp}" + ("" if ok else f"; stderr: {tail[-800:]}"))
        if ok:
            resumed, ev2, tail2 = c.run("zero3-resume", strategy="deepspeed", ds="zero3", precision=bf16, resume=cp, output=stop["output"])
            step = ev.get("stopped", {}).get("step")
            first = resumed["steps"][0] if resumed["steps"] else None
            a, b = (full["losses"][-1] if full["losses"] else None), (resumed["losses"][-1] if resumed["losses"] else None)
            close = a is not None and b is not None and abs(a - b) <= 0.02 * abs(a) + 1e-3
            ok2 = resumed["rc"] == 0 and "finished" in resumed["events"] and first == step + 1 and resumed["steps"][-1] == total and close
            say("PASS" if ok2 else "FAIL", "ZeRO-3 resume: the step counter goes on and the run ends where an uninterrupted one does", f"first step {first} after {step}, final loss {b} vs uninterrupted {a}" + ("" if ok2 else f"; stderr: {tail2[-800:]}"))
    if want("offload"):
        if cuda:
            r, ev, tail = c.run("zero3-offload", strategy="deepspeed", ds="zero3-offload", precision=bf16, timeout=360)
            c.falls("DeepSpeed ZeRO-3 with optimizer and parameters offloaded to CPU (DeepSpeed CPU Adam)", r, tail)
        else:
            say("SKIP", "offload", "CPU offload needs CUDA")
    if want("lora"):
        base = os.path.join(c.work, "single-" + bf16, "final")
        if os.path.isdir(base):
            r, ev, tail = c.run("lora-zero2", strategy="deepspeed", ds="zero2", precision=bf16, method="lora", model={"from": "folder", "path": base}, hyper={"learningRate": 1e-3})
            ok = r["rc"] == 0 and os.path.isfile(os.path.join(r["output"], "adapter", "adapter_model.safetensors")) and os.path.isfile(os.path.join(r["output"], "final", "model.safetensors"))
            say("PASS" if ok else "FAIL", "LoRA under ZeRO-2: adapter and merged model saved", f"rc {r['rc']}, {len(r['steps'])} steps, loss {r['losses'][:1]} -> {r['losses'][-1:]}" + ("" if ok else f"; stderr: {tail[-800:]}"))
        else:
            say("SKIP", "lora", "no base model from the single-process case")

    with open(os.path.join(args.out, "gpu-check.json"), "w") as f:
        json.dump({"environment": info, "results": RESULTS, "failed": FAILED}, f, indent=1)
    say("INFO", "summary", f"{len(RESULTS)} runs, {len(FAILED)} failed: {FAILED}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
