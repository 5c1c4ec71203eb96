"""The training loop: plain PyTorch, one optimizer step per global batch.

Batches: ``batchSize`` sequences per process and micro-batch, ``gradientAccumulation`` micro-batches
per step, on every rank, so the global batch is their product times the world size. The order
comes from a seeded ``DistributedSampler`` per epoch; rank r takes every world-size-th sequence, so
a gang with the same global batch and seed sees exactly the sequences of a single process, and its
losses match up to float rounding. The data position (epoch, step within it) is all a resume needs.

Stopping: SIGTERM (or SIGINT) sets a flag; the current step finishes, every rank agrees to stop, a
checkpoint is written and the process exits 0, well within the scheduler's grace period.
"""
import math
import os
import random
import signal
import sys
import time
from contextlib import nullcontext

import torch
from torch.utils.data.distributed import DistributedSampler

from . import checkpoint as ckpt
from . import data as data_mod
from . import events
from .distributed import any_across, barrier, init_world, mean_across, shutdown, sum_across
from .model import add_lora, build_base, count_parameters, count_trainable, unwrap, wrap
from . import ds
from .spec import SpecError
from .tokenizer import load_tokenizer


class _StopFlag:
    def __init__(self):
        self.requested = False

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if not self.requested:
            print(f"aiplat_train: got signal {signum}; stopping after this step", file=sys.stderr, flush=True)
        self.requested = True


def _check_machine(spec, world):
    """Refusals that depend on this machine, before anything heavy is loaded."""
    cuda = world.device.type == "cuda"
    if spec.method == "qlora" and not cuda:
        raise SpecError("method", "qlora needs a CUDA GPU (4-bit weights through bitsandbytes); this machine has none: use lora or full")
    if spec.hyper.precision == "fp16" and not cuda:
        raise SpecError("hyper.precision", "fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    if spec.strategy == "single" and world.distributed:
        raise SpecError("strategy.kind", f"single runs one process, but WORLD_SIZE is {world.size}: use ddp or fsdp")
    if spec.strategy == "fsdp" and spec.method != "full":
        raise SpecError("strategy.kind", f"fsdp trains full models only; use ddp with {spec.method}")
    if spec.strategy == "deepspeed":
        from . import ds

        ds.check(spec)


def _schedule(spec, optimizer, total_steps):
    from transformers import get_scheduler

    name = spec.hyper.schedule
    if name == "constant":
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=spec.hyper.warmup_steps, num_training_steps=total_steps)


def _seed(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def train(spec):
    world = init_world()
    events.set_rank(world.rank)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Every rank says it is there on stderr (the logs), since only rank 0 writes stdout.
    print(f"aiplat_train: rank {world.rank}/{world.size} on {world.device}, run {spec.run_id}", file=sys.stderr, flush=True)
    try:
        _check_machine(spec, world)
        Run(spec, world).run()
    finally:
        shutdown(world)


class Run:
    def __init__(self, spec, world):
        self.spec = spec
        self.world = world
        self.h = spec.hyper
        self.ckpt_dir = os.path.join(spec.output, "checkpoints")
        self.stop = _StopFlag()
        self.engine = None  # the DeepSpeed engine, with strategy deepspeed

    # -- setup ----------------------------------------------------------------------------------

    def _load(self):
        spec, h, world = self.spec, self.h, self.world
        resume = spec.resume_from
        self.state = ckpt.read_state(resume) if resume else None
        _seed(h.seed)

        self.tokenizer = load_tokenizer(spec, resume_dir=resume)
        docs = data_mod.read_documents(spec.data_path, spec.data_format)
        sequences = data_mod.pack(docs, self.tokenizer, h.sequence_length)
        self.train_set, self.eval_set = data_mod.split(sequences, h.eval_split, h.seed)

        self.micro = h.batch_size
        self.global_batch = h.batch_size * h.gradient_accumulation * world.size
        self.steps_per_epoch = len(self.train_set) // self.global_batch
        if self.steps_per_epoch == 0:
            raise SpecError(
                "hyper.batchSize",
                f"one step takes {self.global_batch} sequences (batchSize x gradientAccumulation x {world.size} processes), "
                f"but the training split has only {len(self.train_set)} of {h.sequence_length} tokens",
            )
        self.total_steps = h.max_steps or h.epochs * self.steps_per_epoch

        # Full-model checkpoints carry the weights; a LoRA checkpoint only the adapter, over the spec's base.
        full_ckpt = resume if resume and spec.method == "full" else None
        model = build_base(spec, self.tokenizer, world.device, weights_from=full_ckpt)
        if spec.method in ("lora", "qlora"):
            model = add_lora(spec, model)
            if resume:
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(model, load_file(os.path.join(resume, "adapter_model.safetensors")))
        if spec.method != "qlora":
            model.to(world.device)
        self.parameters = count_parameters(model)
        self.trainable = count_trainable(model)
        self.base = model  # the unwrapped model (a PeftModel for LoRA)
        self.model = model if spec.strategy == "deepspeed" else wrap(spec, model, world)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if spec.strategy == "deepspeed":
            self.optimizer = ds.optimizer(spec, params, h.learning_rate, h.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=h.learning_rate, weight_decay=h.weight_decay)
        # The schedule works on the optimizer's param groups, which DeepSpeed's ZeRO optimizer keeps.
        self.scheduler = _schedule(spec, self.optimizer, self.total_steps)
        if spec.strategy == "deepspeed":
            self.engine = ds.initialize(spec, model, self.optimizer)
            self.model = self.engine
        self.step = 0
        if resume:
            if self.engine is not None:
                ds.load(self.engine, resume)
            else:
                self._load_optimizer(resume)
            self.scheduler.load_state_dict(torch.load(os.path.join(resume, "scheduler.pt"), weights_only=True))
            self.step = self.state["step"]
            ckpt.restore_rng(self.state["rng"])
            if self.state.get("globalBatch") != self.global_batch:
                raise SpecError("resumeFrom", f"the checkpoint was trained with a global batch of {self.state.get('globalBatch')}, this run has {self.global_batch}")

        self.cuda = world.device.type == "cuda"
        # DeepSpeed does mixed precision itself (its config's bf16 / fp16 sections).
        amp_dtype = None if self.engine is not None else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(h.precision)
        self.autocast = (lambda: torch.autocast(world.device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
        self.scaler = torch.amp.GradScaler("cuda") if h.precision == "fp16" and self.engine is None else None

    def _load_optimizer(self, resume):
        state = torch.load(os.path.join(resume, "optimizer.pt"), weights_only=True)
        if self.spec.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(state)

    # -- data -----------------------------------------------------------------------------------

    def _epoch_order(self, epoch):
        sampler = DistributedSampler(
            range(len(self.train_set)), num_replicas=self.world.size, rank=self.world.rank, shuffle=True, seed=self.h.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def _micro_batches(self, order, step_in_epoch):
        per_step = self.micro * self.h.gradient_accumulation
        mine = order[step_in_epoch * per_step : (step_in_epoch + 1) * per_step]
        for i in range(0, per_step, self.micro):
            yield self.train_set[mine[i : i + self.micro]].to(self.world.device)

    # -- one step ---------------------------------------------------------------------------------

    def _train_step(self, order, step_in_epoch):
        if self.engine is not None:
            return self._train_step_deepspeed(order, step_in_epoch)
        h, model = self.h, self.model
        model.train()
        total = 0.0
        batches = list(self._micro_batches(order, step_in_epoch))
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            # DDP: reduce gradients only after the last micro-batch of the step.
            sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with self.autocast():
                    loss = model(input_ids=batch, labels=batch).loss / len(batches)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.item()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in model.parameters() if p.requires_grad]
        max_norm = h.max_grad_norm if h.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
            grad_norm = grad_norm.full_tensor()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, float(grad_norm)

    def _train_step_deepspeed(self, order, step_in_epoch):
        """The engine accumulates (its config's gradient_accumulation_steps = this run's), clips and
        steps the optimizer at the last micro-batch; the schedule is stepped here, once per step."""
        engine = self.engine
        engine.train()
        total = 0.0
        batches = list(self._micro_batches(order, step_in_epoch))
        for batch in batches:
            loss = engine(input_ids=batch, labels=batch).loss
            engine.backward(loss)  # scaled by 1 / gradient_accumulation_steps inside
            engine.step()
            total += loss.item() / len(batches)
        grad_norm = engine.get_global_grad_norm()
        self.scheduler.step()
        return total, float(grad_norm) if grad_norm is not None else float("nan")

    def _evaluate(self):
        """Mean token loss over the eval split, each rank taking its share of whole batches."""
        n = (len(self.eval_set) // self.world.size) * self.world.size
        if n == 0:
            return None
        mine = list(range(self.world.rank, n, self.world.size))
        # FSDP's and ZeRO-3's forward is collective: every rank runs the same number of batches.
        model = self.model if self.spec.strategy in ("fsdp", "deepspeed") else unwrap(self.model)
        model.eval()
        loss_sum = count = 0.0
        with torch.no_grad():
            for i in range(0, len(mine), self.micro):
                batch = self.eval_set[mine[i : i + self.micro]].to(self.world.device)
                with self.autocast():
                    loss = model(input_ids=batch, labels=batch).loss
                tokens = batch.numel() - batch.shape[0]  # the model shifts labels by one
                loss_sum += loss.item() * tokens
                count += tokens
        loss_sum, count = sum_across(self.world, [loss_sum, count])
        return loss_sum / count

    # -- saving -----------------------------------------------------------------------------------

    def _gather(self):
        """Model and optimizer state for saving: (model_sd or None, optimizer_sd), rank 0's are full.
        Collective under FSDP and ZeRO-3, so every rank calls it. DeepSpeed's optimizer state is
        saved by the engine itself (``_checkpoint``)."""
        if self.engine is not None:
            return ds.gather_weights(self.engine), None
        if self.spec.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            return get_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return None, self.optimizer.state_dict()

    def _save_model(self, folder, model_sd):
        if self.spec.method in ("lora", "qlora"):
            self.base.save_pretrained(folder)
            self.base.get_base_model().config.save_pretrained(folder)
        elif model_sd is not None:
            self.base.save_pretrained(folder, state_dict=model_sd)
        else:
            self.base.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def _checkpoint(self, epoch, step_in_epoch):
        model_sd, optim_sd = self._gather()
        path = os.path.join(self.ckpt_dir, f"step-{self.step}")
        shared_tmp = None
        if self.engine is not None:
            # Every rank writes its ZeRO partition into one temporary folder (on storage all nodes
            # share), which rank 0 then completes and renames into place.
            shared_tmp = os.path.join(self.ckpt_dir, f".tmp-step-{self.step}-deepspeed")
            if self.world.is_main:
                import shutil

                shutil.rmtree(shared_tmp, ignore_errors=True)
                os.makedirs(shared_tmp)
            barrier(self.world)
            ds.save(self.engine, shared_tmp)
            barrier(self.world)
        if self.world.is_main:

            def write(tmp):
                self._save_model(tmp, model_sd)
                if optim_sd is not None:
                    torch.save(optim_sd, os.path.join(tmp, "optimizer.pt"))
                torch.save(self.scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
                ckpt.write_state(
                    tmp,
                    {
                        "runId": self.spec.run_id,
                        "step": self.step,
                        "epoch": self.step / self.steps_per_epoch,
                        "totalSteps": self.total_steps,
                        "data": {"epoch": epoch, "stepInEpoch": step_in_epoch, "stepsPerEpoch": self.steps_per_epoch},
                        "globalBatch": self.global_batch,
                        "worldSize": self.world.size,
                        "method": self.spec.method,
                        "seed": self.h.seed,
                        "rng": ckpt.rng_state(),
                    },
                )

            ckpt.atomic_folder(path, write, tmp=shared_tmp)
            ckpt.prune(self.ckpt_dir, self.h.keep_checkpoints)
            events.event("checkpoint", step=self.step, path=path)
        barrier(self.world)
        return path

    def _save_final(self):
        model_sd, _ = self._gather()
        out = self.spec.output
        result = {}
        if self.world.is_main:
            if self.spec.method in ("lora", "qlora"):
                adapter = ckpt.atomic_folder(os.path.join(out, "adapter"), lambda tmp: self._save_model(tmp, None))
                merged = self.base.merge_and_unload()
                final = ckpt.atomic_folder(os.path.join(out, "final"), lambda tmp: (merged.save_pretrained(tmp), self.tokenizer.save_pretrained(tmp)))
                result = {"adapter": adapter, "final": final, "parameters": count_parameters(merged)}
            else:
                final = ckpt.atomic_folder(os.path.join(out, "final"), lambda tmp: self._save_model(tmp, model_sd))
                result = {"final": final, "parameters": self.parameters}
        barrier(self.world)
        return result

    # -- the loop ---------------------------------------------------------------------------------

    def run(self):
        spec, h, world = self.spec, self.h, self.world
        self.stop.install()
        if world.is_main:
            os.makedirs(spec.output, exist_ok=True)
            ckpt.clean_temporaries(self.ckpt_dir)
            ckpt.clean_temporaries(spec.output)
        self._load()
        events.event(
            "started",
            runId=spec.run_id,
            method=spec.method,
            strategy=spec.strategy,
            worldSize=world.size,
            device=world.device.type,
            parameters=self.parameters,
            trainableParameters=self.trainable,
            trainSequences=len(self.train_set),
            evalSequences=len(self.eval_set),
            globalBatch=self.global_batch,
            totalSteps=self.total_steps,
            startStep=self.step,
            resumedFrom=spec.resume_from,
        )
        tokens_per_step = self.global_batch * h.sequence_length
        epoch, step_in_epoch = divmod(self.step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        last_loss = None
        while self.step < self.total_steps:
            if step_in_epoch == self.steps_per_epoch:
                epoch, step_in_epoch = epoch + 1, 0
                order = self._epoch_order(epoch)
            started = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]
            loss, grad_norm = self._train_step(order, step_in_epoch)
            loss = mean_across(world, loss)
            elapsed = time.perf_counter() - started
            self.step += 1
            step_in_epoch += 1
            last_loss = loss
            if self.step % h.log_interval == 0 or self.step == self.total_steps:
                events.metric(
                    step=self.step,
                    epoch=round(self.step / self.steps_per_epoch, 4),
                    loss=loss,
                    lr=lr,
                    grad_norm=grad_norm,
                    tokens_per_s=round(tokens_per_step / elapsed, 1) if elapsed > 0 else None,
                )
            if not math.isfinite(loss):
                raise RuntimeError(f"the loss is {loss} at step {self.step}; lower hyper.learningRate or use fp32")
            if h.eval_interval and self.step % h.eval_interval == 0 and self.step < self.total_steps:
                events.metric(step=self.step, epoch=round(self.step / self.steps_per_epoch, 4), eval_loss=self._evaluate())
            if any_across(world, self.stop.requested):
                path = self._checkpoint(epoch, step_in_epoch)
                events.event("stopped", step=self.step, checkpoint=path, reason="signal")
                return
            if h.checkpoint_interval and self.step % h.checkpoint_interval == 0 and self.step < self.total_steps:
                self._checkpoint(epoch, step_in_epoch)

        eval_loss = self._evaluate()
        if eval_loss is not None:
            events.metric(step=self.step, epoch=round(self.step / self.steps_per_epoch, 4), eval_loss=eval_loss)
        result = self._save_final()
        events.event("finished", step=self.step, output=spec.output, loss=last_loss, eval_loss=eval_loss, **result)
