"""The run spec: the JSON document that says what to train, on what, and how.

``load_spec`` reads and checks it and fills in defaults; every problem is a ``SpecError`` naming
the field, which the CLI turns into exit code 2 and an ``error`` line. Checks that need the
machine (CUDA for qlora and fp16) or the data (formats, file lines) happen later, but raise the
same error.
"""
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional


class SpecError(Exception):
    """A run spec (or its data) that cannot be trained: exit code 2, the message names the field."""

    def __init__(self, field_name, message):
        super().__init__(f"{field_name}: {message}" if field_name else message)
        self.field = field_name


FORMATS = ("auto", "instruction", "chat", "text")
METHODS = ("full", "lora", "qlora")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("single", "ddp", "fsdp", "deepspeed")


@dataclass
class Lora:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class Hyper:
    learning_rate: float = 3e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 8  # per process; the global batch is batch_size * gradient_accumulation * world size
    gradient_accumulation: int = 1
    sequence_length: int = 128
    precision: str = "fp32"
    seed: int = 42
    eval_split: float = 0.1
    eval_interval: int = 50
    checkpoint_interval: int = 50
    keep_checkpoints: int = 3
    log_interval: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora: Lora = field(default_factory=Lora)


@dataclass
class Spec:
    run_id: str
    output: str
    model: dict
    tokenizer: Optional[str]
    data_path: str
    data_format: str
    method: str
    hyper: Hyper
    strategy: str
    deepspeed_config: Optional[str]
    resume_from: Optional[str]


def _get(obj, key, kind, where, default=None, required=False):
    if key not in obj or obj[key] is None:
        if required:
            raise SpecError(where + key, "is required")
        return default
    value = obj[key]
    # JSON has one number type: accept 3.0 for an int field, but not true/false.
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(where + key, f"must be {kind.__name__}, got {json.dumps(value)}")
    return value


def _one_of(value, allowed, name):
    if value not in allowed:
        raise SpecError(name, f"must be one of {', '.join(allowed)}, got {json.dumps(value)}")
    return value


def _positive(value, name, zero_ok=False):
    if value < 0 or (value == 0 and not zero_ok):
        raise SpecError(name, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")
    return value


def parse_spec(raw):
    if not isinstance(raw, dict):
        raise SpecError(None, "the run spec must be a JSON object")
    output = _get(raw, "output", str, "", required=True)
    if not os.path.isabs(output):
        raise SpecError("output", f"must be an absolute path, got {json.dumps(output)}")

    model = _get(raw, "model", dict, "", required=True)
    source = _one_of(model.get("from"), ("scratch", "folder"), "model.from")
    if source == "scratch":
        _get(model, "template", str, "model.", default="llama")
        _get(model, "config", dict, "model.", required=True)
    else:
        path = _get(model, "path", str, "model.", required=True)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise SpecError("model.path", f"{path} is not a Hugging Face model folder (no config.json)")

    tokenizer = _get(raw, "tokenizer", str, "")
    if tokenizer is not None and not os.path.isdir(tokenizer):
        raise SpecError("tokenizer", f"{tokenizer} is not a folder")

    data = _get(raw, "data", dict, "", required=True)
    data_path = _get(data, "path", str, "data.", required=True)
    if not os.path.exists(data_path):
        raise SpecError("data.path", f"{data_path} does not exist")
    data_format = _one_of(data.get("format", "auto"), FORMATS, "data.format")

    method = _one_of(raw.get("method", "full"), METHODS, "method")

    h = _get(raw, "hyper", dict, "", default={})
    lo = _get(h, "lora", dict, "hyper.", default={})
    lora = Lora(
        r=_positive(_get(lo, "r", int, "hyper.lora.", 8), "hyper.lora.r"),
        alpha=_positive(_get(lo, "alpha", int, "hyper.lora.", 16), "hyper.lora.alpha"),
        dropout=_get(lo, "dropout", float, "hyper.lora.", 0.05),
        target_modules=_get(lo, "targetModules", list, "hyper.lora.", ["q_proj", "v_proj"]),
    )
    if not 0 <= lora.dropout < 1:
        raise SpecError("hyper.lora.dropout", f"must be in [0, 1), got {lora.dropout}")
    if not lora.target_modules or not all(isinstance(m, str) for m in lora.target_modules):
        raise SpecError("hyper.lora.targetModules", "must be a non-empty list of module names")

    hyper = Hyper(
        learning_rate=_positive(_get(h, "learningRate", float, "hyper.", 3e-4), "hyper.learningRate"),
        schedule=_one_of(h.get("schedule", "cosine"), SCHEDULES, "hyper.schedule"),
        warmup_steps=_positive(_get(h, "warmupSteps", int, "hyper.", 0), "hyper.warmupSteps", zero_ok=True),
        epochs=_positive(_get(h, "epochs", int, "hyper.", 1), "hyper.epochs"),
        max_steps=_positive(_get(h, "maxSteps", int, "hyper.", 0), "hyper.maxSteps", zero_ok=True),
        batch_size=_positive(_get(h, "batchSize", int, "hyper.", 8), "hyper.batchSize"),
        gradient_accumulation=_positive(_get(h, "gradientAccumulation", int, "hyper.", 1), "hyper.gradientAccumulation"),
        sequence_length=_positive(_get(h, "sequenceLength", int, "hyper.", 128), "hyper.sequenceLength"),
        precision=_one_of(h.get("precision", "fp32"), PRECISIONS, "hyper.precision"),
        seed=_get(h, "seed", int, "hyper.", 42),
        eval_split=_get(h, "evalSplit", float, "hyper.", 0.1),
        eval_interval=_positive(_get(h, "evalInterval", int, "hyper.", 50), "hyper.evalInterval", zero_ok=True),
        checkpoint_interval=_positive(_get(h, "checkpointInterval", int, "hyper.", 50), "hyper.checkpointInterval", zero_ok=True),
        keep_checkpoints=_positive(_get(h, "keepCheckpoints", int, "hyper.", 3), "hyper.keepCheckpoints"),
        log_interval=_positive(_get(h, "logInterval", int, "hyper.", 1), "hyper.logInterval"),
        weight_decay=_positive(_get(h, "weightDecay", float, "hyper.", 0.0), "hyper.weightDecay", zero_ok=True),
        max_grad_norm=_positive(_get(h, "maxGradNorm", float, "hyper.", 1.0), "hyper.maxGradNorm", zero_ok=True),
        lora=lora,
    )
    if not 0 <= hyper.eval_split < 1:
        raise SpecError("hyper.evalSplit", f"must be in [0, 1), got {hyper.eval_split}")

    st = _get(raw, "strategy", dict, "", default={})
    strategy = _one_of(st.get("kind", "single"), STRATEGIES, "strategy.kind")
    ds_config = _get(st, "deepspeedConfig", str, "strategy.")
    if strategy == "deepspeed":
        if ds_config is None:
            raise SpecError("strategy.deepspeedConfig", "is required with strategy deepspeed")
        if not os.path.isfile(ds_config):
            raise SpecError("strategy.deepspeedConfig", f"{ds_config} does not exist")

    resume = _get(raw, "resumeFrom", str, "")
    if resume is not None and not os.path.isfile(os.path.join(resume, "trainer_state.json")):
        raise SpecError("resumeFrom", f"{resume} is not a checkpoint (no trainer_state.json)")

    return Spec(
        run_id=_get(raw, "runId", str, "", default="run"),
        output=output,
        model=model,
        tokenizer=tokenizer,
        data_path=data_path,
        data_format=data_format,
        method=method,
        hyper=hyper,
        strategy=strategy,
        deepspeed_config=ds_config,
        resume_from=resume,
    )


def load_spec(path):
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise SpecError("--spec", f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SpecError("--spec", f"{path} is not JSON: {e}") from None
    return parse_spec(raw)
