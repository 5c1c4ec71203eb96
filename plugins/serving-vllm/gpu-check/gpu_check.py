"""The vllm GPU check: start the replica from the runtime's launch spec (as the local executor does:
argv without a shell, the port only in $PORT, the spec's env), wait for /health, then check
/v1/chat/completions (plain and streamed), /v1/models and /metrics. Prints PASS/FAIL/INFO lines and
writes $OUT/gpu-check.json. Exit 0 when nothing failed.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

results = []


def line(kind, name, detail=""):
    print(f"{kind} {name}{': ' + detail if detail else ''}", flush=True)
    results.append({"kind": kind, "name": name, "detail": detail})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=120):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers.get("content-type", ""), r.read().decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=int, default=600)
    a = p.parse_args()
    spec = json.load(open(a.spec))
    model = os.path.join(a.out, "model")
    # The serving suites' tiny chat model, head size 32 (the train venv is not needed: vllm's venv has torch + transformers).
    subprocess.run([a.python, os.path.join(a.root, "plugins/serving/test/fixtures/make_tiny_chat_model.py"), model, "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    subst = {"@PYTHON@": a.python, "@MODEL@": model, "@REVISION_DIR@": a.out, "@ROOT@": a.root}

    def fill(s):
        for k, v in subst.items():
            s = s.replace(k, v)
        return s

    argv = [fill(x) for x in spec["command"]]
    port = free_port()
    env = {**os.environ, **spec.get("env", {}), "PORT": str(port)}
    line("INFO", "argv", " ".join(argv))
    logf = open(os.path.join(a.out, "vllm.log"), "w")
    started = time.time()
    proc = subprocess.Popen(argv, env=env, cwd=fill(spec.get("workingDir", a.out)), stdout=logf, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    ready = None
    try:
        while time.time() - started < a.timeout:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(base + spec["readiness"]["path"], timeout=5) as r:
                    if r.status == 200:
                        ready = time.time() - started
                        break
            except Exception:
                time.sleep(2)
        if ready is None:
            line("FAIL", "ready", f"not ready (exit {proc.poll()}); see {a.out}/vllm.log")
            return 1
        line("PASS", "ready", f"{ready:.1f} s after start")
        body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12, "temperature": 0}
        st, _, txt = post(base + "/v1/chat/completions", body)
        ans = json.loads(txt)
        ok = st == 200 and ans["model"] == "tiny-chat" and ans["usage"]["completion_tokens"] > 0
        line("PASS" if ok else "FAIL", "chat completion", json.dumps(ans["choices"][0]["message"])[:200])
        st, ctype, txt = post(base + "/v1/chat/completions", {**body, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}})
        events = [e[6:] for e in txt.split("\n\n") if e.startswith("data: ")]
        usage = json.loads(events[-2]).get("usage") if len(events) >= 2 else None
        ok = st == 200 and "text/event-stream" in ctype and events[-1] == "[DONE]" and usage and usage["completion_tokens"] == 5
        line("PASS" if ok else "FAIL", "streamed chat completion", f"{len(events)} events")
        with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
            ids = [m["id"] for m in json.load(r)["data"]]
        line("PASS" if ids == ["tiny-chat"] else "FAIL", "models", str(ids))
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            metrics = r.read().decode()
        gen = [l for l in metrics.splitlines() if l.startswith("vllm:generation_tokens_total")]
        line("PASS" if gen and float(gen[0].split()[-1]) > 0 else "FAIL", "metrics", gen[0] if gen else "no vllm:generation_tokens_total")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        json.dump({"readySeconds": ready, "results": results}, open(os.path.join(a.out, "gpu-check.json"), "w"), indent=2)
    return 1 if any(r["kind"] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
