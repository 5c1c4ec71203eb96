"""Validate DeepSpeed configs with DeepSpeed's own config classes (``deepspeed.runtime.config``).

    python validate_config.py a.json b.json ...

Prints one JSON line per file: ``{"file", "ok": true, "parsed": {...}}`` with what DeepSpeed read
(ZeRO stage, offload devices, precision, batch sizes, clipping), or ``{"file", "ok": false,
"error"}`` with DeepSpeed's own message. A world size of 1 (no process group).
"""
import json
import logging
import sys

from deepspeed.utils import logger

logger.setLevel(logging.ERROR)
from deepspeed.runtime.config import DeepSpeedConfig  # noqa: E402


def device(section):
    if section is None:
        return None
    value = getattr(section, "device", None)
    return getattr(value, "value", value)


def parse(cfg):
    c = DeepSpeedConfig(cfg)
    z = c.zero_config
    return {
        "stage": int(c.zero_optimization_stage),
        "offloadOptimizer": device(z.offload_optimizer),
        "offloadParameters": device(z.offload_param),
        "overlapComm": bool(z.overlap_comm),
        "reduceBucketSize": int(z.reduce_bucket_size),
        "gatherOnSave": bool(z.gather_16bit_weights_on_model_save),
        "bf16": bool(c.bfloat16_config.enabled),
        "fp16": bool(c.float16_config.enabled) if hasattr(c, "float16_config") else bool(c.fp16_enabled),
        "microBatch": int(c.train_micro_batch_size_per_gpu),
        "gradientAccumulation": int(c.gradient_accumulation_steps),
        "trainBatch": int(c.train_batch_size),
        "gradientClipping": float(c.gradient_clipping),
    }


for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as f:
        cfg = json.load(f)
    try:
        print(json.dumps({"file": name, "ok": True, "parsed": parse(cfg)}))
    except Exception as e:  # noqa: BLE001 - DeepSpeed raises pydantic, assertion and its own errors
        print(json.dumps({"file": name, "ok": False, "error": f"{type(e).__name__}: {e}"}))
