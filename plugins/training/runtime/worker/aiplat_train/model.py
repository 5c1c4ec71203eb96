"""Building the model to train: from a config template (scratch) or a Hugging Face folder, with
LoRA / QLoRA adapters through peft, and wrapped for DDP or FSDP.

Weights are kept in float32; bf16 and fp16 runs use autocast, so the optimizer works on full
precision master weights (what the saved checkpoints hold too).
"""
import torch

from .spec import SpecError


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def count_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_base(spec, tokenizer, device, weights_from=None):
    """The base causal LM: from ``weights_from`` (a full-model checkpoint), the spec's folder, or
    a fresh one from the spec's config template."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if spec.method == "qlora":
        return _build_quantized(spec, device)
    if weights_from or spec.model["from"] == "folder":
        return AutoModelForCausalLM.from_pretrained(weights_from or spec.model["path"], dtype=torch.float32)

    template = spec.model.get("template", "llama")
    config = dict(spec.model["config"])
    config.setdefault("vocab_size", len(tokenizer))
    try:
        cfg = AutoConfig.for_model(template, **config)
    except ValueError as e:
        raise SpecError("model.template", f"unknown model template {template!r} ({e})") from None
    if cfg.vocab_size < len(tokenizer):
        raise SpecError("model.config.vocab_size", f"is {cfg.vocab_size}, smaller than the tokenizer's {len(tokenizer)} tokens")
    cfg.bos_token_id = tokenizer.bos_token_id
    cfg.eos_token_id = tokenizer.eos_token_id
    cfg.pad_token_id = tokenizer.pad_token_id
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def _build_quantized(spec, device):
    # QLoRA: a 4-bit base from bitsandbytes, which needs CUDA; checked before we get here.
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if spec.model["from"] != "folder":
        raise SpecError("method", "qlora quantizes a pretrained base model: model.from must be folder")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise SpecError("method", "qlora needs bitsandbytes, which is not installed (pip install bitsandbytes)") from None
    from peft import prepare_model_for_kbit_training

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(spec.model["path"], quantization_config=bnb, device_map={"": device})
    return prepare_model_for_kbit_training(model)


def add_lora(spec, model):
    from peft import LoraConfig, get_peft_model

    lo = spec.hyper.lora
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lo.target_modules if m not in names]
    if missing:
        raise SpecError("hyper.lora.targetModules", f"the model has no modules named {', '.join(missing)}")
    config = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=list(lo.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def wrap(spec, model, world):
    """DDP or FSDP around the model (nothing for one process)."""
    if spec.strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(world.device.type, (world.size,))
        # Shard block by block (the model's own "do not split" classes), then the rest at the root.
        blocks = set(getattr(model, "_no_split_modules", None) or [])
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    return model


def unwrap(model):
    return model.module if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
