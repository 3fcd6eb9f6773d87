"""The Ray-free trainer: one trial = train one model, then evaluate it at every test iteration.

    from deepthink.train import run_trial
    outcome = run_trial(cfg, data_root, trial_id="abc", checkpoint_dir=Path("ckpt"))
    results.write_trial("results/my_sweep", "abc", outcome.rows)

(`deepthink train RUN.yaml` does exactly this; `deepthink sweep` calls it from a Ray Tune trainable.)
`evaluate_checkpoint` evaluates a finished trial again from its checkpoint, with other test
settings (`deepthink evaluate`).

Training (DESIGN.md section 3): progressive loss, per batch
    n ~ U{0..max_iters-1}, k ~ U{1..max_iters-n}
    loss = (1-alpha) * CE(output after max_iters) + alpha * CE(output after n iterations without
           autograd, then k with it; the state starts from the projection)
alpha = 1 never runs the max_iters pass, alpha = 0 never runs the progressive one, and with
0 < alpha < 1 the no-grad state after n iterations is read (detached) from the max_iters pass
instead of being recomputed. Feed-forward nets (separate blocks) train with alpha = 0: their
blocks differ, so "k more iterations from iteration n" is not the recurrence the loss is about. The
planner (deepthink/trial.py, MODEL_SETTINGS) gives their trials alpha 0, so a model x alpha grid
trains each once and the rows record the alpha used; a TrialConfig that asks a feed-forward net for
another alpha is refused here rather than silently changed. Masked tasks (mazes) average the loss
over counted positions only (`task.loss_mask`, non-wall pixels), like the reference.

Speed: every split lives on the device and batches are gathered by index (no DataLoader); the
loss is accumulated on the device and read once per NAN_CHECK_EVERY batches and per epoch; the
learning rate is a Python float per batch; bf16 autocast and channels-last per deepthink/precision.py.

Faults: a non-finite loss stops training (status 'diverged'); the weights of the last finite epoch
are evaluated. Checkpoints (deepthink/checkpoint.py) hold everything needed for a resumed trial to
produce exactly the rows of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from deepthink.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from deepthink.configfile import ConfigError
from deepthink.trial import TrialConfig
from deepthink.hardware import device_description
from deepthink.evaluate import EvalProgress, accuracy_at, evaluate_split, runnable_iterations
from deepthink.models import ThinkingNet, build_model, count_parameters, get_model_spec
from deepthink.optim import build_optimizer, lr_at, set_lr
from deepthink.results import trained_rows
from deepthink.precision import Precision, cast_for_autocast, flush_subnormal_, resolve_precision
from deepthink.tasks import Split, get_task

EPOCH_EVAL_EXAMPLES = 256     # fixed train/val subsets behind the per-epoch train_acc / val_acc
NAN_CHECK_EVERY = 50          # batches between the (only) host reads of the running loss


@dataclass
class TrialOutcome:
    status: str               # 'ok' | 'diverged' | 'stopped'
    rows: list[dict]          # deepthink.results rows (metric 'iteration' and 'max_confidence')
    epochs_completed: int
    train_seconds: float
    n_params: int


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_usable(cfg: TrialConfig) -> None:
    """Refuse settings the model cannot use (the planner never makes such a TrialConfig)."""
    if not get_model_spec(cfg.model).recurrent and cfg.train.alpha != 0:
        raise ConfigError(f"trial {cfg.trial_name}: {cfg.model} has separate blocks and trains with "
                          f"alpha 0 (found train.alpha {cfg.train.alpha:g}); the sweep planner sets it")


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean CE over the counted positions of the batch (mask (B, *S) True), as the reference's
    `loss[mask > 0].mean()`, so its learning rates, weight decay and clipping carry over."""
    loss = F.cross_entropy(logits.float(), targets, reduction="none")     # (B, *S)
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def progressive_loss(model: ThinkingNet, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                     alpha: float, max_iters: int, rng: random.Random) -> torch.Tensor:
    """The training loss of one batch (call inside the precision's autocast)."""
    x = cast_for_autocast(x)                             # once per batch (precision.py says why)
    n = k = 0
    if alpha > 0:
        n = rng.randrange(0, max_iters)                  # iterations without autograd
        k = rng.randrange(1, max_iters - n + 1)          # iterations with autograd after them
    loss = torch.zeros((), device=x.device)
    start_state = None                                   # None: the progressive run projects x itself
    if alpha < 1:
        state = model.project(x)                         # (B, w, *S)
        if alpha > 0 and n == 0:
            start_state = state                          # shared projection, gradients from both terms
        for i in range(max_iters):
            state = model.step(state, x, i)
            if alpha > 0 and n > 0 and i == n - 1:
                start_state = state.detach()             # = n no-grad iterations, without recomputing
        loss = loss + (1 - alpha) * masked_cross_entropy(model.head(state), y, mask)
    if alpha > 0:
        if n > 0 and start_state is None:                # alpha == 1: run the n iterations, no autograd
            with torch.no_grad():
                start_state = model.project(x)
                for i in range(n):
                    start_state = model.step(start_state, x, i)
        out = model(x, k, state=start_state, start=n)
        loss = loss + alpha * masked_cross_entropy(out.logits, y, mask)
    return loss


def train_epoch(model: ThinkingNet, opt: torch.optim.Optimizer, cfg: TrialConfig, alpha: float,
                epoch: int, data: tuple, shuffle: torch.Generator, rng: random.Random,
                precision: Precision) -> tuple[float, float]:
    """One pass over the training data. Returns (mean loss, lr of the last batch); the loss is
    NaN/inf as soon as a check sees a non-finite value (the caller then rolls back)."""
    x_all, y_all, mask_all = data                        # (N, C, *S), (N, *S), (N, *S) | None
    n_examples, bs = x_all.shape[0], cfg.train.batch_size
    batches = math.ceil(n_examples / bs)
    perm = torch.randperm(n_examples, generator=shuffle).to(x_all.device)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), device=x_all.device)
    lr = cfg.train.lr
    model.train()
    for b in range(batches):
        idx = perm[b * bs:(b + 1) * bs]
        x = precision.prepare_inputs(x_all[idx])
        mask = None if mask_all is None else mask_all[idx]
        lr = lr_at(cfg.train, epoch, b, batches)
        set_lr(opt, lr)
        with precision.autocast():
            loss = progressive_loss(model, x, y_all[idx], mask, alpha, cfg.max_iters, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.clip)
        opt.step()
        loss_sum += loss.detach()
        if (b + 1) % NAN_CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
            return float("nan"), lr
    return loss_sum.item() / batches, lr


@dataclass
class _Run:
    """A trial in progress: what training updates, and what a checkpoint saves."""
    cfg: TrialConfig
    model: ThinkingNet
    opt: torch.optim.Optimizer
    precision: Precision
    shuffle: torch.Generator      # batch order
    rng: random.Random            # progressive-loss draws
    checkpoint_dir: Path
    epoch: int = 0                # epochs completed
    train_seconds: float = 0.0
    status: str = "training"      # training | diverged | stopped (a finished trial has epoch == cfg.train.epochs)

    def save(self) -> None:
        save_checkpoint(self.checkpoint_dir, {
            "config": self.cfg.to_dict(), "epoch": self.epoch, "status": self.status,
            "precision": self.precision.name, "train_seconds": self.train_seconds,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "rng": capture_rng(self.shuffle, self.rng)})


def run_trial(cfg: TrialConfig, data_root: Path, *, trial_id: str, checkpoint_dir: Path,
              resume_from: Path | None = None,
              on_epoch: Callable[[dict, Path | None], None] | None = None,
              device: str | None = None, log: Callable[[str], None] = print,
              node: str | None = None, device_label: str | None = None,
              should_stop: Callable[[int], str | None] | None = None, log_epochs: bool = True) -> TrialOutcome:
    """Train (or continue training) one trial, evaluate it, return its result rows (built by
    deepthink.results.trained_rows). `node` / `device_label` go into the rows' `node` and `device`
    columns (default: this host's name, the torch device); the sweep passes its Ray node and GPU.
    `log_epochs=False`: no log line per epoch (the sweep's driver prints one from on_epoch's metrics).
    A long evaluation logs its progress (EvalProgress).

    `should_stop(epochs done)`: asked before every epoch after the first (a sweep's early-stopping
    scheduler); a reason (text) ends training there: the weights of that epoch are evaluated and
    the rows say status 'stopped' with the epochs completed."""
    check_usable(cfg)
    dev = resolve_device(device)
    task = get_task(cfg.task)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    torch.set_flush_denormal(True)     # this thread only; flush_subnormal_ covers the weights
    splits = task.splits(cfg.data, Path(data_root), split_seed=cfg.data.seed)
    run = _start(cfg, task, dev, checkpoint_dir, resume_from, log)
    n_params = count_parameters(run.model)
    log(f"trial {trial_id}: {cfg.task} {cfg.model} width {cfg.width} max_iters {cfg.max_iters} "
        f"alpha {cfg.train.alpha:g} seed {cfg.seed} | {n_params:,} parameters | {dev} {run.precision.name}"
        f"{' channels-last' if run.precision.channels_last else ''} {torch.get_num_threads()} threads | "
        f"train {len(splits[0])} val {len(splits[1])} examples")
    _train(run, task, splits[0], splits[1], dev, on_epoch, log, should_stop=should_stop, log_epochs=log_epochs)
    status = _row_status(run.status)
    results = _evaluate(cfg, run.model, run.precision, task, splits, dev, log)
    rows = trained_rows(cfg, trial_id, results, status=status, epochs_completed=run.epoch, n_params=n_params,
                        train_seconds=run.train_seconds, node=node or socket.gethostname(),
                        device=device_description(device_label or dev.type, run.precision.name))
    return TrialOutcome(status, rows, run.epoch, run.train_seconds, n_params)


def _start(cfg: TrialConfig, task, dev: torch.device, checkpoint_dir: Path, resume_from: Path | None,
           log: Callable[[str], None]) -> _Run:
    """The model, optimizer and random streams of a new trial, or of one resumed from a checkpoint."""
    model = build_model(cfg.model, width=cfg.width, max_iters=cfg.max_iters, **task.model_io())
    shuffle = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    ckpt = load_checkpoint(Path(resume_from), cfg.to_dict()) if resume_from is not None else None
    precision = resolve_precision(ckpt["precision"] if ckpt else cfg.train.precision, dev)
    model = precision.prepare_model(model.to(dev))
    run = _Run(cfg, model, build_optimizer(model, cfg.train), precision, shuffle, rng, Path(checkpoint_dir))
    if ckpt:
        run.epoch, run.train_seconds, run.status = ckpt["epoch"], ckpt["train_seconds"], ckpt["status"]
        _load_states(model, run.opt, ckpt, Path(resume_from), with_optimizer=run.status == "training")
        restore_rng(ckpt["rng"], shuffle, rng)
        state = "finished" if run.status == "training" and run.epoch >= cfg.train.epochs else run.status
        log(f"resumed from {Path(resume_from)} after epoch {run.epoch} ({state})")
    return run


def _train(run: _Run, task, train: Split, val: Split, dev: torch.device,
           on_epoch: Callable[[dict, Path | None], None] | None, log: Callable[[str], None],
           should_stop: Callable[[int], str | None] | None = None, log_epochs: bool = True) -> None:
    """Epochs until cfg.train.epochs, a non-finite loss (then: status diverged, last good weights)
    or `should_stop` giving a reason (then: status stopped, the weights of the last epoch).
    `log_epochs=False`: no log line per epoch."""
    cfg, model, precision = run.cfg, run.model, run.precision
    x_train = precision.prepare_inputs(train.inputs.to(dev))
    y_train = train.targets.to(dev)
    data = (x_train, y_train, task.loss_mask(x_train))
    x_val, y_val = precision.prepare_inputs(val.inputs.to(dev)), val.targets.to(dev)
    good = _snapshot(model)
    while run.status == "training" and run.epoch < cfg.train.epochs:
        reason = should_stop(run.epoch) if should_stop is not None and run.epoch > 0 else None
        if reason:
            run.status = "stopped"
            log(f"stopped after epoch {run.epoch}/{cfg.train.epochs}: {reason}; evaluating the weights of epoch "
                f"{run.epoch}")
            return
        t0 = time.perf_counter()
        loss, lr = train_epoch(model, run.opt, cfg, cfg.train.alpha, run.epoch, data, run.shuffle, run.rng, precision)
        if not (math.isfinite(loss) and _weights_finite(model)):
            run.status = "diverged"
            run.train_seconds += time.perf_counter() - t0
            model.load_state_dict(good)
            log(f"epoch {run.epoch + 1:>4}/{cfg.train.epochs}: loss is not finite; stopping (diverged) and "
                f"evaluating the weights after epoch {run.epoch}")
            run.save()
            return
        flush_subnormal_(model)
        run.epoch += 1
        n, eb = EPOCH_EVAL_EXAMPLES, cfg.test.batch_size
        train_acc = accuracy_at(model, task, x_train[:n], y_train[:n], cfg.max_iters, batch_size=eb, precision=precision)
        val_acc = accuracy_at(model, task, x_val[:n], y_val[:n], cfg.max_iters, batch_size=eb, precision=precision)
        seconds = time.perf_counter() - t0
        run.train_seconds += seconds
        good = _snapshot(model)
        written = None
        if run.epoch % cfg.train.checkpoint_every == 0 or run.epoch == cfg.train.epochs:
            run.save()
            written = run.checkpoint_dir
        if log_epochs:
            log(f"epoch {run.epoch:>4}/{cfg.train.epochs}  loss {loss:.4f}  train_acc {train_acc:6.2f}  "
                f"val_acc {val_acc:6.2f}  lr {lr:.3g}  {seconds:.1f}s")
        if on_epoch is not None:
            on_epoch({"epoch": run.epoch, "loss": loss, "train_acc": train_acc, "val_acc": val_acc,
                      "lr": lr, "seconds": seconds}, written)


def checkpoint_config(ckpt_file: Path, ckpt: dict) -> TrialConfig:
    """The trial configuration saved in a checkpoint, or a CheckpointError naming the file."""
    try:
        return TrialConfig.from_dict(ckpt["config"])
    except Exception as e:
        raise CheckpointError(f"{ckpt_file}: its configuration cannot be read by this version "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def load_trained(ckpt_file: Path, ckpt: dict, *, device: str | None = None,
                 precision: str | None = None) -> tuple[TrialConfig, ThinkingNet, Precision, torch.device]:
    """A checkpoint's configuration and trained model, on `device`, in the precision it trained in
    (or `precision`), in eval mode: what evaluate_checkpoint and analysis.state_size start from."""
    cfg = checkpoint_config(ckpt_file, ckpt)
    dev = resolve_device(device)
    model = build_model(cfg.model, width=cfg.width, max_iters=cfg.max_iters, **get_task(cfg.task).model_io())
    prec = resolve_precision(precision or ckpt["precision"], dev)
    model = prec.prepare_model(model.to(dev))
    _load_states(model, None, ckpt, Path(ckpt_file).parent, with_optimizer=False)
    return cfg, model.eval(), prec, dev


def _row_status(status: str) -> str:
    """The rows' status for a run or checkpoint status: a finished 'training' run is 'ok'."""
    return status if status in ("diverged", "stopped") else "ok"


def evaluate_checkpoint(ckpt_file: Path, ckpt: dict, data_root: Path, *, trial_id: str, sweep: str,
                        test_changes: dict | None = None, eval_difficulties: list[int] | None = None,
                        device: str | None = None, precision: str | None = None,
                        log: Callable[[str], None] = print) -> TrialOutcome:
    """Evaluate a finished trial again from its checkpoint (`ckpt`, read from `ckpt_file` by
    read_checkpoint; checkpoint.find_checkpoint locates the file): the configuration is the one saved
    in the checkpoint, with `test_changes` (TestConfig keys) applied, the test difficulties replaced
    and the precision the checkpoint was trained in replaced where given. The rows are those the
    trial would have written with these settings (`sweep` names them); status and training time are
    the checkpoint's. Refuses a checkpoint of unfinished training."""
    epochs = checkpoint_config(ckpt_file, ckpt).train.epochs     # refuse before loading any weights
    if ckpt["status"] == "training" and ckpt["epoch"] < epochs:
        raise CheckpointError(f"{ckpt_file}: training is not finished ({ckpt['epoch']} of {epochs} "
                              f"epochs); finish it first (`deepthink sweep ... --resume` or the same "
                              f"`deepthink train` command)")
    cfg, model, prec, dev = load_trained(ckpt_file, ckpt, device=device, precision=precision)
    task = get_task(cfg.task)
    for d in eval_difficulties or []:
        if problem := task.check_difficulty(d):
            raise ConfigError(f"test difficulty {d} for {cfg.task}: expected {problem}")
    cfg = dataclasses.replace(cfg, sweep=sweep, test=cfg.test.replace(**(test_changes or {})),
                              data=cfg.data.replace(eval=list(eval_difficulties)) if eval_difficulties else cfg.data)
    check_usable(cfg)
    torch.set_flush_denormal(True)
    splits = task.splits(cfg.data, Path(data_root), split_seed=cfg.data.seed)
    n_params = count_parameters(model)
    status = _row_status(ckpt["status"])
    log(f"evaluating {ckpt_file}: {cfg.task} {cfg.model} width {cfg.width} seed {cfg.seed}, trained "
        f"{ckpt['epoch']} epochs ({status}) | {dev} {prec.name}")
    results = _evaluate(cfg, model, prec, task, splits, dev, log)
    rows = trained_rows(cfg, trial_id, results, status=status, epochs_completed=ckpt["epoch"], n_params=n_params,
                        train_seconds=ckpt["train_seconds"], node=socket.gethostname(),
                        device=device_description(dev.type, prec.name))
    return TrialOutcome(status, rows, ckpt["epoch"], ckpt["train_seconds"], n_params)


def _evaluate(cfg: TrialConfig, model: ThinkingNet, precision: Precision, task, splits: list[Split],
              dev: torch.device, log: Callable[[str], None]) -> list:
    """[(split, difficulty, SplitResult)] at every iteration 1..test.iterations (train/val: 1..test.train_val_iterations when set)."""
    t0 = time.perf_counter()
    n = {id(s): cfg.test.examples_cap(s.difficulty) for s in splits}   # None: all (slicing with None keeps all)
    b = cfg.test.batch_size
    iters = {s.split: cfg.test.split_iterations(s.split) for s in splits}   # train/val may stop earlier
    size = {id(s): math.prod(s.targets.shape[1:]) or 1 for s in splits}    # positions (or cells) per example
    progress = EvalProgress(sum(len(s.inputs[:n[id(s)]]) * size[id(s)] * runnable_iterations(model, iters[s.split])
                                for s in splits), log)
    results = []
    for s in splits:
        def on_step(examples, i, k, s=s):
            progress.step(examples * size[id(s)], f"{s.split} {s.difficulty} at iteration {i}/{k}")
        results.append((s.split, s.difficulty, evaluate_split(
            model, task, s.inputs[:n[id(s)]].to(dev), s.targets[:n[id(s)]].to(dev), iters[s.split],
            batch_size=b, precision=precision, on_step=on_step)))
    log(f"evaluated {len(splits)} splits at {max(r.iterations for _, _, r in results)} iterations in "
        f"{time.perf_counter() - t0:.1f}s: " + ", ".join(
            f"{split} {d}: {max(r.accuracy('iteration')):.1f}% best" for split, d, r in results))
    return results


def _weights_finite(model: ThinkingNet) -> bool:
    """One host sync: the last update can overflow the weights after a finite loss. Float buffers
    too (BatchNorm statistics, spectral-norm estimates): evaluation reads them."""
    return bool(torch.stack([t.isfinite().all() for t in model.state_dict().values()
                             if t.is_floating_point()]).all())


def _snapshot(model: ThinkingNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _load_states(model, opt, ckpt: dict, where: Path, with_optimizer: bool) -> None:
    try:
        model.load_state_dict(ckpt["model"])
        if with_optimizer:
            opt.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where / 'checkpoint.pt'}: weights do not fit this model "
                              f"({str(e).splitlines()[0]})") from None
