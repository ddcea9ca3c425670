"""The training loop, one phase at a time, on accelerate (CPU, one GPU, or DDP over several processes).

    config = load_config("shapes-core-64", "core")
    train(config, "runs/shapes-core-64")      # -> the run folder, which is also the model folder

A run folder holds the trained model (`config.json` + EMA weights + `training.json`, loadable by
`studio sample --model RUN` and `studio.hub.load_model`), `log.jsonl` (one JSON object per logged step,
skipped step, checkpoint and validation), `checkpoints/` and `validation/` grids.

Reproducibility: the data order is a function of the step (see batches.py), all training noise comes from a
per-process generator saved in every checkpoint, and the learning rate is a function of the step (and of
wall time only when `max_minutes` is set). So with a step budget, a resumed run is bit-identical to an
uninterrupted one on the CPU.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedDataParallelKwargs, broadcast
from tqdm.auto import tqdm

from studio.diffusion import CaptionContrast, LossModel, TimestepSampler
from studio.errors import ConfigError, StudioError
from studio.precision import cpu_has_bf16_units
from studio.growth import core_fingerprint, growth_report, parameter_groups, report_as_dicts
from studio.train import checkpoint as ckpt
from studio.train.batches import build_batches
from studio.train.build import build_model
from studio.train.config import TrainConfig, parse_overrides, resolve
from studio.train.ema import EMA
from studio.train.mixed_precision import resolve_mixed_precision
from studio.train.step import train_step
from studio.train.twin import format_budget, with_equal_compute
from studio.train.validation import build_validation, run_validation, validation_prompts

LOG_FILE = "log.jsonl"
CONFIG_FILE = "train_config.json"
TRAINING_FILE = "training.json"


def timestep_sampler(config: TrainConfig) -> "TimestepSampler":
    return TimestepSampler(config.timestep_sampling, config.logit_normal_mean, config.logit_normal_std)


class TrainingDivergedError(StudioError):
    """Too many non-finite losses or gradients in a row."""


def lr_factor(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up over `warmup_steps`, then cosine from 1 to `min_lr_ratio` over the budget's progress."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warmup * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def _hardware(accelerator, precision_decision: dict) -> dict:
    device = accelerator.device
    info = dict(device=str(device), processes=accelerator.num_processes, torch=torch.__version__,
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), mixed_precision=accelerator.mixed_precision)
    if precision_decision:  # `mixed_precision: auto`: why this format (and the step times it measured)
        info["mixed_precision_auto"] = precision_decision
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _reset_single_process_accelerate() -> None:
    """accelerate keeps one AcceleratorState per process and refuses a second Accelerator with another
    mixed_precision; in a single (non-distributed) process, runs are independent, so start afresh."""
    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True):
        self.config, self.out, self.progress = config, Path(out_dir), progress
        self.compute_budget: dict | None = None  # studio.train.twin: the equal-compute budget of a scratch twin
        # Process-wide torch settings are restored when the run ends (tests and notebooks run several).
        self._saved_globals = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        _reset_single_process_accelerate()
        # Several processes without a GPU (torchrun, `accelerate launch --multi_gpu` on a CPU machine): accelerate
        # only picks its multi-CPU (gloo) mode when asked for the CPU.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        # `auto` times the model's step on this machine; several CPU processes share the cores, so no one of them
        # can time the run's step: they train in full precision.
        on_gpu = torch.cuda.is_available() and not config.cpu
        if multi_cpu and config.mixed_precision == "auto":
            self.mixed_precision, self.precision_decision = "no", {"reason": "several CPU processes"}
        else:
            self.mixed_precision, self.precision_decision = resolve_mixed_precision(
                config, torch.device("cuda" if on_gpu else "cpu"))
        # Frozen parameters have requires_grad=False, so DDP does not wait for their gradients; every
        # trainable parameter is used in each forward, so find_unused_parameters can stay off (faster).
        self.accelerator = acc = Accelerator(
            cpu=config.cpu or multi_cpu, mixed_precision=self.mixed_precision,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
        if self.mixed_precision == "fp16" and acc.device.type == "cpu":
            raise ConfigError("mixed_precision fp16 needs a GPU; on the CPU use bf16, auto or no")
        if self.mixed_precision == "bf16" and acc.device.type == "cpu" and not cpu_has_bf16_units():
            warnings.warn("bf16 autocast on a CPU without native bf16 (AVX512-BF16/AMX) is emulated and can be "
                          "~10x slower than fp32; consider mixed_precision=auto or no", stacklevel=2)
        self._prepare_run_dir(resume, overwrite)

        # --- model, data, optimizer, EMA
        with acc.main_process_first():  # the first process builds the pixel and embedding caches
            self.model, self.parent = build_model(config)
            self.model.to(acc.device)
            self.batches, self.data_info = build_batches(
                config, self.model.resolution, rank=acc.process_index, world=acc.num_processes,
                device=acc.device, progress=progress and acc.is_main_process,
                text_encoder=self.model.text_encoder_name)
            self.validation = self._build_validation() if acc.is_main_process else None
        self.core_fingerprint_start = core_fingerprint(self.model)
        self.core_frozen = not any(p.requires_grad for p in self.model.core.parameters())
        groups = parameter_groups(self.model, config.lr, config.core_lr_multiplier, config.weight_decay)
        for group in groups:
            group["base_lr"] = group["lr"]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))
        self.trainable = [p for g in groups for p in g["params"]]
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None

        # --- state, then restore it from the newest checkpoint when resuming
        self.step, self.images_seen, self.elapsed_before, self.bad_in_row, self.bad_total = 0, 0, 0.0, 0, 0
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + acc.process_index)
        self.resumed_from = None
        if resume and (latest := ckpt.latest_checkpoint(self.out)) is not None:
            self._load_checkpoint(latest)

        self.train_model, self.optimizer = acc.prepare(self.model, self.optimizer)
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        self.loss_model = LossModel(self.train_model, self.model)

    # ------------------------------------------------------------------------------------------- setup

    def _prepare_run_dir(self, resume: bool, overwrite: bool) -> None:
        acc, out = self.accelerator, self.out
        # Something worth keeping: a checkpoint or a finished model (a start that failed before its first
        # checkpoint is simply started again).
        has_run = ckpt.latest_checkpoint(out) is not None or (out / "config.json").is_file()
        if acc.is_main_process:
            if has_run and not (resume or overwrite):
                raise ConfigError(f"{out} already holds a training run; continue it with `studio train resume "
                                  f"{out}` (or --resume), or start over with --overwrite")
            if overwrite or not has_run:
                for name in (ckpt.CHECKPOINTS_DIR, "validation", LOG_FILE, CONFIG_FILE, TRAINING_FILE,
                             "config.json", "diffusion_pytorch_model.safetensors"):
                    path = out / name
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        acc.wait_for_everyone()

    def _build_validation(self):
        if self.config.validation_n == 0:
            return None
        prompts, targets = validation_prompts(self.config)
        if not prompts:  # a folder data set: its first distinct captions
            records = self.batches.dataset.records
            prompts = list(dict.fromkeys(records[i]["caption"] for i in self.batches.indices))
            prompts = prompts[:self.config.validation_n]
        return build_validation(prompts, targets, self.model.text_encoder_name)

    # ------------------------------------------------------------------------------------------- checkpoints

    def _rng_state(self) -> dict:
        state = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def save_checkpoint(self) -> None:
        acc = self.accelerator
        tmp = ckpt.temp_dir(self.out, self.step)
        if acc.is_main_process:
            ckpt.begin(self.out, self.step)
        acc.wait_for_everyone()
        ckpt.write_rng(tmp, acc.process_index, self._rng_state())
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = dict(step=self.step, images_seen=self.images_seen, elapsed_s=self.elapsed(),
                         bad_in_row=self.bad_in_row, bad_total=self.bad_total, processes=acc.num_processes)
            ckpt.write(tmp, model_state=self.model.state_dict(),
                       ema_state=self.ema.state_dict() if self.ema else None,
                       optimizer_state=self.optimizer.state_dict(), state=state)
            path = ckpt.commit(self.out, self.step, self.config.keep_checkpoints)
            self.log(event="checkpoint", step=self.step, path=str(path.relative_to(self.out)))
        acc.wait_for_everyone()
        self.last_checkpoint_step = self.step

    def _load_checkpoint(self, path: Path) -> None:
        data = ckpt.load(path, self.accelerator.process_index)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        if self.ema is not None and data["ema"] is not None:
            self.ema.load_state_dict(data["ema"])
        self.generator.set_state(data["rng"]["generator"])
        torch.set_rng_state(data["rng"]["torch"])
        if "cuda" in data["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(data["rng"]["cuda"])
        state = data["state"]
        self.step, self.images_seen, self.elapsed_before = state["step"], state["images_seen"], state["elapsed_s"]
        self.bad_in_row, self.bad_total = state["bad_in_row"], state["bad_total"]
        self.resumed_from = str(path)

    # ------------------------------------------------------------------------------------------- loop

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.start_time)

    def progress_fraction(self, elapsed: float) -> float:
        c, parts = self.config, []
        if c.max_steps:
            parts.append(self.step / c.max_steps)
        if c.max_minutes:
            parts.append(elapsed / (60.0 * c.max_minutes))
        return max(parts)

    def _shared_elapsed(self) -> float:
        """Wall time as the main process sees it, so every process takes the same LR and stop decision."""
        elapsed = self.elapsed()
        if self.config.max_minutes and self.accelerator.num_processes > 1:
            elapsed = float(broadcast(torch.tensor([elapsed], device=self.accelerator.device))[0])
        return elapsed

    def log(self, **record) -> None:
        if self.accelerator.is_main_process:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def train_step(self) -> tuple[float | None, float | None]:
        """One optimizer step; returns (loss, grad norm), or (None, None) when the step was skipped."""
        c = self.config
        images, text, opposites = self.batches.batch_and_opposites(self.step, self.generator)
        contrast = CaptionContrast(*opposites) if opposites is not None else None
        return train_step(self.accelerator, self.model, self.loss_model, images, text, self.optimizer,
                          self.trainable, self.generator, weighting=c.loss_weighting, timesteps=timestep_sampler(c),
                          grad_clip=c.grad_clip, ema=self.ema, contrast=contrast)

    def run(self) -> Path:
        """Train until the budget is spent, checkpoint, validate, write the model; returns the run folder."""
        try:
            return self._run()
        finally:
            self._restore_globals()

    def _run(self) -> Path:
        acc, c = self.accelerator, self.config
        self.start_time = time.perf_counter()
        session_start_step, session_images = self.step, 0
        if self.resumed_from:
            self.log(event="resume", step=self.step, checkpoint=self.resumed_from)
        else:
            self.log(event="start", phase=c.phase, config=c.to_dict(), parent=self.parent,
                     data=self.data_info.to_dict(), hardware=_hardware(acc, self.precision_decision))
        by_steps = c.max_steps is not None
        bar = tqdm(total=c.max_steps if by_steps else int(c.max_minutes * 60), initial=self.step if by_steps else 0,
                   unit="step" if by_steps else "s", desc=f"train {c.phase}",
                   disable=not (self.progress and acc.is_main_process), dynamic_ncols=True)
        window = dict(loss=0.0, n=0, images=0, norm=0.0, t=time.perf_counter())
        self.last_loss, self.images_per_s = None, None
        self.last_checkpoint_step = self.step if self.resumed_from else None
        self.last_validation_step = None
        restore_signals = self._stop_on_signals()
        try:
            while True:
                if self.stop_requested:  # Ctrl-C / SIGTERM: between two steps, so the checkpoint is consistent
                    if self.step > 0 and self.last_checkpoint_step != self.step:
                        self.save_checkpoint()
                    raise KeyboardInterrupt
                elapsed = self._shared_elapsed()
                if self.progress_fraction(elapsed) >= 1.0:
                    break
                factor = lr_factor(self.step, self.progress_fraction(elapsed), c)
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                loss, norm = self.train_step()
                self.step += 1
                self.images_seen += c.batch_size
                session_images += c.batch_size
                window["images"] += c.batch_size
                if loss is None:
                    self._bad_step()
                else:
                    self.bad_in_row = 0
                    window["loss"] += loss
                    window["norm"] += norm
                    window["n"] += 1
                if self.step % c.log_every == 0 and window["n"]:
                    self._log_window(window, factor)
                if by_steps:
                    bar.update(1)
                else:
                    bar.update(max(0, int(self.elapsed()) - bar.n))
                bar.set_postfix(loss=f"{self.last_loss:.4f}" if self.last_loss is not None else "-",
                                img_s=f"{self.images_per_s:.1f}" if self.images_per_s else "-",
                                step=self.step, refresh=False)
                # No checkpoints during a run of bad steps: the newest checkpoint stays the last good one.
                if c.checkpoint_every and self.step % c.checkpoint_every == 0 and self.bad_in_row == 0:
                    self.save_checkpoint()
                if c.validate_every and self.step % c.validate_every == 0:
                    self.validate()
        finally:
            restore_signals()
            bar.close()
        if window["n"]:
            self._log_window(window, lr_factor(self.step, 1.0, c))
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint()
        metrics = {}
        if c.validation_n > 0:  # on every process: validate() synchronises them
            metrics = self.last_validation if self.last_validation_step == self.step else self.validate()
        wall = time.perf_counter() - self.start_time
        self.finish(metrics, session_images / wall if wall > 0 else 0.0, self.step - session_start_step)
        return self.out

    def _stop_on_signals(self):
        """Single process: the first Ctrl-C (or SIGTERM) stops the run after the current step with a
        checkpoint; a second Ctrl-C aborts at once. Returns a function that restores the old handlers."""
        self.stop_requested = False
        if self.accelerator.num_processes > 1 or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum, frame):
            self.stop_requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts immediately
            print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

        for sig in previous:
            signal.signal(sig, request_stop)

        def restore():
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        return restore

    def _restore_globals(self) -> None:
        deterministic, threads = self._saved_globals
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)

    def _bad_step(self) -> None:
        self.bad_in_row += 1
        self.bad_total += 1
        self.log(event="skipped", step=self.step, reason="non-finite loss or gradient", in_row=self.bad_in_row)
        if self.bad_in_row >= self.config.max_bad_steps:
            last = ckpt.latest_checkpoint(self.out)
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
            raise TrainingDivergedError(
                f"{self.bad_in_row} steps in a row had a non-finite loss or gradient (step {self.step}); "
                f"training stopped and {where}. Lower lr (now {self.config.lr}), raise warmup_steps, or try "
                "mixed_precision=no, then `studio train resume` from the checkpoint.")

    def _log_window(self, window: dict, factor: float) -> None:
        acc = self.accelerator
        now = time.perf_counter()
        loss = torch.tensor([window["loss"] / window["n"]], device=acc.device)
        if acc.num_processes > 1:
            loss = acc.reduce(loss, reduction="mean")
        self.last_loss = float(loss[0])
        self.images_per_s = window["images"] / max(now - window["t"], 1e-9)
        self.log(event="train", step=self.step, loss=self.last_loss, lr=self.config.lr * factor,
                 grad_norm=window["norm"] / window["n"], images_per_s=round(self.images_per_s, 2),
                 images_seen=self.images_seen, wall_s=round(self.elapsed(), 2))
        window.update(loss=0.0, n=0, images=0, norm=0.0, t=now)

    # ------------------------------------------------------------------------------------------- outputs

    def sampling_model(self) -> torch.nn.Module:
        """The weights that are saved and sampled: the EMA, or the raw weights without EMA."""
        model = self.ema.averaged_copy(self.model) if self.ema is not None else copy.deepcopy(self.model)
        return model.eval().requires_grad_(False)

    def validate(self) -> dict:
        result = {}
        if self.accelerator.is_main_process and self.validation is not None:
            result = run_validation(self.sampling_model(), self.validation, self.out, self.step, self.config)
            self.log(event="validation", step=self.step, **result)
        self.accelerator.wait_for_everyone()
        self.last_validation_step, self.last_validation = self.step, result
        return result

    def finish(self, metrics: dict, images_per_s: float, session_steps: int) -> None:
        """Write the model (EMA weights, config.json with training_phase) and training.json, atomically."""
        acc, c = self.accelerator, self.config
        if acc.is_main_process:
            model = self.sampling_model().to("cpu")
            model.register_to_config(training_phase=c.phase)
            tmp = self.out / ".model-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp, safe_serialization=True)
            fingerprint = core_fingerprint(model)
            if self.core_frozen and fingerprint != self.core_fingerprint_start:  # a bug, never a user error
                raise RuntimeError("the frozen core changed during training; this is a bug, please report it")
            training = dict(
                phase=c.phase, preset=c.preset, parent=self.parent, data=self.data_info.to_dict(),
                config=c.to_dict(), steps=self.step, images_seen=self.images_seen,
                seeds=dict(seed=c.seed, data_seed=c.data_seed, validation_seed=c.validation_seed),
                wall_time_s=round(self.elapsed(), 2), images_per_s=round(images_per_s, 2),
                steps_this_session=session_steps, resumed_from=self.resumed_from, hardware=_hardware(acc, self.precision_decision),
                core_frozen=self.core_frozen, core_fingerprint=fingerprint,
                parameters=report_as_dicts(growth_report(self.model)),  # trainable as trained
                final_metrics=dict(loss=self.last_loss, skipped_steps=self.bad_total, **metrics))
            if self.compute_budget is not None:
                training["compute_budget"] = self.compute_budget
            training["legs"] = training_legs(self.parent, c.phase, training)
            training["images_seen_total"] = sum(leg["images_seen"] or 0 for leg in training["legs"])
            (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=2))
            for f in tmp.iterdir():  # weights first, config.json last: a folder with a config is loadable
                if f.name != "config.json":
                    os.replace(f, self.out / f.name)
            os.replace(tmp / "config.json", self.out / "config.json")
            shutil.rmtree(tmp, ignore_errors=True)
            self.log(event="end", step=self.step, images_seen=self.images_seen, wall_s=round(self.elapsed(), 2),
                     images_per_s=round(images_per_s, 2), model=str(self.out))
        acc.wait_for_everyone()


def training_leg(training: dict) -> dict:
    """One leg of training, summarised from its training.json."""
    return dict({k: training.get(k) for k in ("preset", "steps", "images_seen", "wall_time_s", "images_per_s")},
                device=(training.get("hardware") or {}).get("device"))


def training_legs(parent: dict | None, phase: str, training: dict) -> list[dict]:
    """Every leg that trained this model's phase, this run's last. A parent of the same phase (a model that went on
    training from a shipped one, over several sessions or machines) passes its legs on; so does the grown model
    whose stages a grow starts from (`stages_from`: its stages went on training around a further-trained core)."""
    source = None
    if parent and parent.get("training_phase") == phase:
        source = parent["path"]
    elif parent and phase == "grow" and isinstance(parent.get("stages_from"), dict):
        source = parent["stages_from"]["path"]
    legs: list[dict] = []
    if source:
        try:
            previous = json.loads((Path(source) / TRAINING_FILE).read_text())
        except (OSError, ValueError):  # a source without its record: its legs are unknown, this one still counts
            previous = {}
        legs = previous.get("legs") or ([training_leg(previous)] if previous else [])
    return [*legs, training_leg(training)]


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train one phase and write the model into `out_dir`; returns the folder. See the module docstring."""
    config, budget = with_equal_compute(config)
    trainer = Trainer(config, out_dir, resume=resume, overwrite=overwrite, progress=progress)
    if budget is not None:  # a scratch twin at its grown model's compute: said up front, kept in training.json
        trainer.compute_budget = budget
        trainer.log(event="compute_budget", **budget)
        if progress:
            print(format_budget(budget), flush=True)
    return trainer.run()


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The resolved config a run was started with (for `studio train resume`), plus `--set` overrides."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a training run (no {CONFIG_FILE}); give the --out folder of a run")
    saved = json.loads(path.read_text())
    phase, preset = saved.pop("phase"), saved.pop("preset", None)
    config = resolve(saved, phase, parse_overrides(overrides), where=str(path))
    config.preset = preset
    return config
