"""The DeepSpeed strategy: ZeRO stages 1-3 through ``deepspeed.initialize`` around the same model,
optimizer (torch AdamW) and schedule as the other strategies.

The run spec's ``strategy.deepspeedConfig`` names a ``ds_config.json`` (the trainer-deepspeed plugin
writes it from the wizard's choices). The worker owns the fields that must agree with the run's
hyper-parameters: it fills ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps``
and ``gradient_clipping`` from them, and refuses a config whose values contradict them. Checkpoints
hold DeepSpeed's own state (``deepspeed/``: model states and each rank's ZeRO partition of the
optimizer) beside the usual safetensors weights, so a resume restores the optimizer exactly.
DeepSpeed runs on CUDA (NCCL) and, for tests, on the CPU (its CPU accelerator with gloo).
"""
import json
import logging
import sys

from .spec import SpecError

TAG = "deepspeed"  # the folder inside a checkpoint that holds DeepSpeed's state


def _import():
    try:
        import deepspeed
    except ImportError:
        raise SpecError(
            "strategy.kind",
            "deepspeed is not installed in the worker's environment: run plugins/trainer-deepspeed/setup.sh (it adds deepspeed to the training venv)",
        ) from None
    from deepspeed.utils import logger

    # DeepSpeed logs to stdout, which is this worker's protocol: send it to stderr, warnings only.
    logger.setLevel(logging.WARNING)
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    return deepspeed


def config_of(spec):
    """The DeepSpeed config for this run: the file's, with the run's batch fields filled in."""
    where = "strategy.deepspeedConfig"
    try:
        with open(spec.deepspeed_config, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError(where, f"cannot read {spec.deepspeed_config}: {e}") from None
    if not isinstance(cfg, dict):
        raise SpecError(where, "the DeepSpeed config must be a JSON object")
    h = spec.hyper
    owned = {
        "train_micro_batch_size_per_gpu": (h.batch_size, "hyper.batchSize"),
        "gradient_accumulation_steps": (h.gradient_accumulation, "hyper.gradientAccumulation"),
    }
    for key, (value, name) in owned.items():
        if key in cfg and cfg[key] != value:
            raise SpecError(where, f"{key} is {cfg[key]}, but the run's {name} is {value}")
        cfg[key] = value
    cfg.setdefault("gradient_clipping", h.max_grad_norm)
    cfg.setdefault("zero_allow_untested_optimizer", True)  # the optimizer is torch's AdamW
    cfg.setdefault("steps_per_print", 2**31 - 1)
    for name in ("bf16", "fp16"):
        enabled = bool(cfg.get(name, {}).get("enabled", False))
        if enabled != (h.precision == name):
            raise SpecError(where, f"its {name}.enabled is {str(enabled).lower()}, but the run's hyper.precision is {h.precision}")
    return cfg


def stage_of(cfg):
    return int(cfg.get("zero_optimization", {}).get("stage", 0))


def check(spec):
    """Refusals before anything heavy is loaded."""
    _import()
    cfg = config_of(spec)
    stage = stage_of(cfg)
    if spec.method == "qlora":
        raise SpecError("strategy.kind", "qlora's 4-bit base is not trained under DeepSpeed here: use ddp with qlora, or lora under DeepSpeed")
    if stage == 3 and spec.method != "full":
        raise SpecError("strategy.options.stage", "ZeRO-3 partitions the weights, which LoRA's merge needs whole: use stage 1 or 2 with LoRA")
    return cfg


def optimizer(spec, params, lr, weight_decay):
    """torch's AdamW, or DeepSpeed's CPU Adam (the same AdamW update, vectorised on the CPU) when
    the optimizer state is offloaded: DeepSpeed refuses a GPU optimizer there. CPU Adam is a
    compiled op, built on first use (ninja and a C++ compiler, which DeepSpeed's images carry)."""
    import torch

    cfg = config_of(spec)
    offload = (cfg.get("zero_optimization", {}).get("offload_optimizer") or {}).get("device", "none")
    if offload in ("cpu", "nvme"):
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lr, weight_decay=weight_decay, adamw_mode=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def initialize(spec, model, optimizer):
    deepspeed = _import()
    cfg = config_of(spec)
    engine, _optimizer, _loader, _scheduler = deepspeed.initialize(model=model, optimizer=optimizer, config=cfg)
    return engine


def save(engine, folder):
    """Collective: every rank writes its part into ``folder/deepspeed``."""
    engine.save_checkpoint(folder, tag=TAG, save_latest=False)


def load(engine, folder):
    path, _client = engine.load_checkpoint(folder, tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=False)
    if path is None:
        raise SpecError("resumeFrom", f"{folder} holds no DeepSpeed state: it was saved by another strategy")


def gather_weights(engine):
    """The whole state dict for saving, on rank 0 (collective), under ZeRO-3; None for stages 0-2,
    whose module holds whole weights on every rank."""
    if engine.zero_optimization_stage() == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return None
