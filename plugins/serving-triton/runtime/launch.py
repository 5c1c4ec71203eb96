"""Starts tritonserver for one replica of a serving-triton revision (local executor).

The local executor gives the replica's HTTP port only as the environment variable PORT and never runs
a shell, so this launcher (run by the Triton venv's python) reads PORT, prepares the environment that
the tritonserver of nvidia-pytriton needs, and execs it:

  python launch.py [--tritonserver PATH] --model-repository DIR [-- extra tritonserver flags]
  python launch.py --check [--tritonserver PATH]     prints one JSON line: versions, backends

What the bundled server needs (found out on nvidia-pytriton 0.7.0):
- Its binary and backends lie in pytriton/tritonserver/{bin,backends}; its shared libraries in
  nvidia_pytriton.libs (found through the binary's RUNPATH; LD_LIBRARY_PATH gets them too, for the
  backends).
- The python backend's stub (triton_python_backend_stub) must lie next to libtriton_python.so in the
  backend directory, but the wheel ships one stub per Python version in python_backend_stubs/3.X.
  Like pytriton itself, the launcher assembles a backend directory with the stub of this
  interpreter's version (once, in <venv>/aiplat-triton/backends-3.X, atomically).
- The stub embeds libpython3.X.so (the system's or the interpreter's own), which knows nothing of the
  venv: PYTHONPATH gets the venv's site-packages, so model.py imports torch and transformers from it,
  and LD_LIBRARY_PATH this interpreter's lib folder first, so the stub embeds the same Python build.
- Only the HTTP endpoint is on: GRPC is off (replicas on one node would clash on 8001), metrics are
  on a free port of their own (tritonserver serves metrics on a separate port only); the launcher
  prints that port to stderr, and AIPLAT_TRITON_METRICS_PORT picks it (0: metrics off).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request

VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def pytriton_dir():
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"serving-triton: nvidia-pytriton is not installed for {sys.executable} (run plugins/serving-triton/setup.sh)")
    return os.path.join(list(spec.submodule_search_locations)[0], "tritonserver")


def libs_dir():
    return os.path.join(os.path.dirname(os.path.dirname(pytriton_dir())), "nvidia_pytriton.libs")


def backend_directory():
    """A backend directory whose python backend has the stub of this interpreter's version."""
    bundled = os.path.join(pytriton_dir(), "backends")
    stub = os.path.join(pytriton_dir(), "python_backend_stubs", VERSION, "triton_python_backend_stub")
    if not os.path.isfile(stub):
        raise SystemExit(f"serving-triton: nvidia-pytriton has no python backend stub for Python {VERSION}")
    target = os.path.join(sys.prefix, "aiplat-triton", f"backends-{VERSION}")
    marker = os.path.join(target, "python", "triton_python_backend_stub")
    if os.path.isfile(marker) and os.path.getmtime(marker) >= os.path.getmtime(stub):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".backends-{VERSION}-", dir=os.path.dirname(target))
    shutil.copytree(bundled, os.path.join(scratch, "backends"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, os.path.join(scratch, "backends", "python", "triton_python_backend_stub"))
    try:
        os.rename(os.path.join(scratch, "backends"), target)
    except OSError:
        if not os.path.isfile(marker):  # not a concurrent launcher that won the race
            shutil.rmtree(target, ignore_errors=True)
            os.rename(os.path.join(scratch, "backends"), target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def server_env():
    env = dict(os.environ)
    site = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    paths = [p for p in [site, platlib] if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", libs_dir()]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    # The stub and model.py find this interpreter's tools first (as pytriton does).
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tritonserver_path(given):
    path = given or os.path.join(pytriton_dir(), "bin", "tritonserver")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise SystemExit(f"serving-triton: no tritonserver at {path}")
    return path


def check(tritonserver):
    """Runs the server on an empty repository: it must start, answer /v2 (its version) and stop."""
    info = {"python": sys.executable, "pythonVersion": VERSION, "tritonserver": tritonserver}
    for name in ["torch", "transformers", "numpy"]:
        module = __import__(name)
        info[name] = module.__version__
    from importlib.metadata import version

    info["pytriton"] = version("nvidia-pytriton")
    backends = backend_directory()
    info["backends"] = sorted(os.listdir(backends))
    port = free_port()
    with tempfile.TemporaryDirectory() as repo:
        argv = [tritonserver, f"--model-repository={repo}", f"--http-port={port}", "--allow-grpc=false",
                "--allow-metrics=false", f"--backend-directory={backends}", "--exit-timeout-secs=2"]
        log = tempfile.TemporaryFile()
        server = subprocess.Popen(argv, env=server_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"serving-triton: tritonserver exited ({server.returncode}): {log.read().decode(errors='replace')[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=2) as answer:
                        meta = json.load(answer)
                        info["version"] = meta.get("version")
                        info["extensions"] = meta.get("extensions")
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                raise SystemExit("serving-triton: tritonserver did not answer within 30 s")
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    print(json.dumps(info))


def main(argv):
    tritonserver = ""
    repository = None
    extra = []
    checking = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            extra = argv[i + 1:]
            break
        if arg == "--check":
            checking = True
        elif arg == "--tritonserver":
            i += 1
            tritonserver = argv[i]
        elif arg == "--model-repository":
            i += 1
            repository = argv[i]
        else:
            raise SystemExit(f"serving-triton: unknown argument {arg}")
        i += 1
    tritonserver = tritonserver_path(tritonserver)
    if checking:
        return check(tritonserver)
    if not repository:
        raise SystemExit("serving-triton: --model-repository is required")
    port = os.environ.get("PORT")
    if not port or not port.isdigit():
        raise SystemExit("serving-triton: the replica's port is not in $PORT")
    metrics = os.environ.get("AIPLAT_TRITON_METRICS_PORT")
    metrics_port = int(metrics) if metrics and metrics.isdigit() else free_port()
    args = [
        tritonserver,
        f"--model-repository={repository}",
        f"--backend-directory={backend_directory()}",
        f"--cache-directory={os.path.join(pytriton_dir(), 'caches')}",
        "--http-address=0.0.0.0",
        f"--http-port={port}",
        "--allow-grpc=false",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--exit-timeout-secs=10",
    ]
    if metrics_port:
        args += ["--allow-metrics=true", "--allow-gpu-metrics=false", f"--metrics-port={metrics_port}"]
        print(f"serving-triton: metrics on port {metrics_port} (/metrics)", file=sys.stderr, flush=True)
    else:
        args += ["--allow-metrics=false"]
    args += extra
    print("serving-triton: " + " ".join(args), file=sys.stderr, flush=True)
    os.execve(tritonserver, args, server_env())


if __name__ == "__main__":
    main(sys.argv[1:])
