"""Checkpoints and the final model, written atomically.

A checkpoint is ``output/checkpoints/step-<N>/``: the model (``model.safetensors``, or the LoRA
adapter's ``adapter_model.safetensors``), ``config.json``, the tokenizer, ``optimizer.pt``,
``scheduler.pt`` and ``trainer_state.json`` (step, epoch, data position, RNG states). Each is
written into a hidden temporary folder and renamed into place, so a reader never sees half a
checkpoint, and a kill mid-write leaves only a temporary folder behind (removed next time).
"""
import base64
import json
import os
import random
import shutil

import torch

STATE_FILE = "trainer_state.json"


def _b64(t):
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s):
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state():
    state = {"python": _pyrandom_to_json(random.getstate()), "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s.cpu()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(_unb64(state["torch"]))
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _pyrandom_to_json(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def atomic_folder(final_path, write, tmp=None):
    """Call ``write(tmp)`` for a fresh temporary folder next to ``final_path``, then move it there.
    ``tmp``: an existing temporary folder (``.tmp-`` prefixed, beside ``final_path``) that others
    (DeepSpeed's ranks) have already written into."""
    parent = os.path.dirname(final_path)
    os.makedirs(parent, exist_ok=True)
    if tmp is None:
        tmp = os.path.join(parent, f".tmp-{os.path.basename(final_path)}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    write(tmp)
    if os.path.exists(final_path):
        # Replacing an older copy (a re-run over the same step): rename it away first, so the new one
        # still appears in one rename.
        old = tmp + ".old"
        os.rename(final_path, old)
        os.rename(tmp, final_path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final_path)
    return final_path


def clean_temporaries(folder):
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def list_checkpoints(folder):
    steps = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith("step-") and name[5:].isdigit():
                steps.append((int(name[5:]), os.path.join(folder, name)))
    return [path for _, path in sorted(steps)]


def prune(folder, keep):
    """Keep the newest ``keep`` checkpoints."""
    for path in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def read_state(path):
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def write_state(folder, state):
    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
