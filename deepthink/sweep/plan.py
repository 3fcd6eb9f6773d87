"""Sweep planning without Ray: how many trials run at once, resources that can never exist, storage
rules for multi-node clusters, and the `--dry-run` report (trial table, counts, cost estimate).

A `Capacity` describes where trials may run: the alive nodes' resources and, on an autoscaling
cluster, the node types the autoscaler may still add. For this machine it comes from
os.sched_getaffinity / torch.cuda.device_count (the same numbers the embedded ray.init is given),
so a local dry run never starts Ray; runner.py builds one from a running cluster.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from deepthink.config import SweepConfig
from deepthink.trial import TrialConfig
from deepthink.configfile import config_error as _err
from deepthink.results import is_local

# Filesystems that several machines can mount at once (EFS and most NAS mount as nfs4).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
              "glusterfs", "fuse.glusterfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.sshfs", "fuse.juicefs",
              "fuse.cephfs", "wekafs", "9p", "virtiofs"}


@dataclass
class Capacity:
    where: str                                     # "this machine" | "the cluster at ADDRESS"
    nodes: list[dict[str, float]]                  # alive nodes: {"CPU": 16, "GPU": 1, ...}
    scalable: list[tuple[dict[str, float], int]] = field(default_factory=list)   # (node type, max count)

    @property
    def cluster(self) -> bool:
        return self.where != "this machine"

    def total(self, key: str) -> float:
        return sum(n.get(key, 0) for n in self.nodes)


def local_cpu_count() -> int:
    """CPUs this process may use (affinity-aware: containers and taskset pin fewer than cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS
        return os.cpu_count() or 1


def local_gpu_count() -> int:
    import torch
    return torch.cuda.device_count()


def local_capacity() -> Capacity:
    return Capacity("this machine", [{"CPU": float(local_cpu_count()), "GPU": float(local_gpu_count())}])


def slots(node: dict[str, float], cpu: float, gpu: float) -> int:
    """Trials of (cpu, gpu) that fit on one node at once. The epsilon absorbs float sums (4 x 0.25)."""
    n = math.floor(node.get("CPU", 0) / cpu + 1e-9)
    if gpu > 0:
        n = min(n, math.floor(node.get("GPU", 0) / gpu + 1e-9))
    return max(n, 0)


def concurrency(cap: Capacity, cpu: float, gpu: float) -> tuple[int, int | None]:
    """(trials at once on the nodes alive now, trials at once with the autoscaler at full size or
    None when nothing can be added)."""
    now = sum(slots(n, cpu, gpu) for n in cap.nodes)
    if not cap.scalable:
        return now, None
    return now, now + sum(slots(res, cpu, gpu) * count for res, count in cap.scalable)


def worker_types(cluster_config: dict) -> list[tuple[dict[str, float], int]]:
    """(resources, max count) of each worker node type in a `ray up` config (as prepared by Ray:
    the head node type excluded, types without explicit resources skipped)."""
    head = cluster_config.get("head_node_type")
    out = []
    for name, t in (cluster_config.get("available_node_types") or {}).items():
        count = int(t.get("max_workers", cluster_config.get("max_workers", 0)))
        if name != head and count > 0 and t.get("resources"):
            out.append(({k: float(v) for k, v in t["resources"].items()}, count))
    return out


def check_feasible(sweep: SweepConfig, cap: Capacity) -> None:
    """Fail now, naming the file and key, when no node could ever run one trial (Ray would wait forever)."""
    r = sweep.resources
    types = cap.nodes + [res for res, count in cap.scalable if count > 0]
    gpus = cap.total("GPU") + sum(res.get("GPU", 0) * count for res, count in cap.scalable)
    if r.gpu > 0 and gpus == 0:
        raise _err(sweep.path, "resources.gpu", r.gpu,
                   f"0 here: {cap.where} has no GPU (Ray would wait forever for one). Use resources.gpu: 0, "
                   f"or run on a cluster with GPU nodes (--address)")
    if not any(slots(t, r.cpu, r.gpu) >= 1 for t in types):
        biggest = max(types, key=lambda t: (t.get("GPU", 0), t.get("CPU", 0)))
        raise _err(sweep.path, "resources", {"cpu": r.cpu, "gpu": r.gpu},
                   f"at most what one node of {cap.where} offers (largest: {biggest.get('CPU', 0):g} CPUs, "
                   f"{biggest.get('GPU', 0):g} GPUs); a trial never spans nodes, so Ray would wait forever")


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding `path` (longest mount point in /proc/mounts), or None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    path = os.path.realpath(path)
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def storage_problem(uri: str, cap: Capacity, unseen_by: list[str] | None) -> str | None:
    """Why `uri` cannot hold this sweep's results and Ray state, or None if it can.

    `unseen_by`: nodes that could not see a marker file written there (None when not probed).
    Ray's trials checkpoint into the storage path from whichever node they run on, and --resume and
    the results reader need all of it in one place: a path only one machine sees does not work."""
    if not is_local(uri) or not cap.cluster:
        return None
    fix = "use a shared filesystem mounted at the same path on every node, or s3:// / gs:// storage"
    if unseen_by:
        return (f"storage {uri} is a local path that node(s) {', '.join(unseen_by)} cannot see; on a "
                f"multi-node cluster Ray needs storage every node can reach: {fix}")
    if len(cap.nodes) <= 1 and cap.scalable:
        kind = filesystem_type(uri)
        if kind not in NETWORK_FS:
            return (f"storage {uri} is on a local {kind or 'unknown'} filesystem, but {cap.where} can add "
                    f"worker nodes that would not see it: {fix}")
    return None


def _varying_keys(trials: list[TrialConfig]) -> list[str]:
    """Config columns that differ between trials (what the dry-run table shows)."""
    rows = [_flat(t) for t in trials]
    keys = list(rows[0])
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def _flat(t: TrialConfig) -> dict:
    d = {"model": t.model, "width": t.width, "depth": t.depth, "max_iters": t.max_iters, "seed": t.seed}
    d.update({f"train.{k}": v for k, v in vars(t.train).items()})
    return d


TABLE_ROWS = 20     # a dry run shows the first and last TABLE_ROWS trials of a larger grid


def trial_table(trials: list[TrialConfig], rows: int | None = TABLE_ROWS) -> str:
    """The trials as a table; of more than 2 x `rows`, the first and last `rows` (None: all)."""
    shown = list(enumerate(trials))
    if rows is not None and len(trials) > 2 * rows:
        shown = shown[:rows] + shown[-rows:]
    keys = ["model", "width", "depth", "max_iters"] + [k for k in _varying_keys(trials)
                                                       if k not in ("model", "width", "depth", "max_iters", "seed")] + ["seed"]
    header = ["#"] + keys
    body = [[str(i)] + [f"{_flat(t)[k]}" for k in keys] for i, t in shown]
    widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
    fmt = lambda row: "  ".join(v.rjust(w) for v, w in zip(row, widths))   # noqa: E731
    lines = [fmt(header)] + [fmt(r) for r in body]
    if len(shown) < len(trials):
        lines.insert(1 + rows, f"... {len(trials) - len(shown):,} more trials (the first and last {rows} shown) ...")
    return "\n".join(lines)


def cost_lines(sweep: SweepConfig, n_trials: int, at_once: int) -> list[str]:
    per = sweep.cost.get("gpu_hours_per_trial")
    if per is None:
        return ["estimated cost: not given (add `cost: {gpu_hours_per_trial: H, usd_per_gpu_hour: P}` to the file)"]
    total = per * n_trials
    line = f"estimated cost: {n_trials} trials x {per:g} GPU-hours = {total:g} GPU-hours"
    price = sweep.cost.get("usd_per_gpu_hour")
    if price is not None:
        line += f" = ${total * price:,.2f} at ${price:g}/GPU-hour"
    out = [line]
    g = sweep.resources.gpu
    if g > 0 and at_once > 0:
        # A trial holding a GPU share g for wall time T uses g*T GPU-hours.
        wall = math.ceil(n_trials / at_once) * per / g
        out.append(f"estimated wall-clock: ~{wall:g} h ({at_once} at once, each ~{per / g:g} h on its {g:g}-GPU share)")
    return out


def input_cells(task: str, difficulty: int) -> int:
    """Cells of one example's input: prefix sums a string of `difficulty` bits, mazes an image of
    about (2n + 6)^2 pixels (9 -> 24 x 24, 59 -> 124 x 124), chess an 8 x 8 board."""
    return {"prefix_sums": difficulty, "mazes": (2 * difficulty + 6) ** 2}.get(task, 64)


def largest(sweep: SweepConfig, trials: list[TrialConfig]) -> tuple[int, int]:
    """(width, max_iters) of the largest trial: of the listed trials, or for an adaptive search the
    upper ends of its space."""
    if trials:
        return max(t.width for t in trials), max(t.max_iters for t in trials)
    from deepthink.models import model_iterations
    t = sweep.template()
    width = max(sweep.space["width"].args) if "width" in sweep.space else t.width
    if "max_iters" in sweep.space:
        iters = max(sweep.space["max_iters"].args)
    elif "depth" in sweep.space:
        iters = model_iterations(depth=max(sweep.space["depth"].args))
    else:
        iters = t.max_iters
    return width, iters


def memory_estimate(sweep: SweepConfig, trials: list[TrialConfig]) -> float:
    """A rough upper estimate of one trial's peak memory in bytes, for the largest trial: training
    keeps ~8 float32 activations of batch x width x cells per iteration for backprop; testing
    (no gradients) ~4 of test batch x width x cells at the largest eval difficulty."""
    width, iters = largest(sweep, trials)
    train = sweep.train.batch_size * width * input_cells(sweep.task, sweep.data.train) * (8 * iters + 8) * 4
    test = sweep.test.batch_size * width * input_cells(sweep.task, max(sweep.data.eval)) * 4 * 4
    return float(max(train, test))


def machine_memory() -> float | None:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_line(sweep: SweepConfig, trials: list[TrialConfig], cap: Capacity, at_once: int) -> str:
    est = memory_estimate(sweep, trials)
    line = f"memory per trial (rough, largest trial): ~{est / 2**30:.2g} GiB"
    ram = machine_memory() if not cap.cluster else None
    if ram and sweep.resources.gpu == 0 and est * max(at_once, 1) > ram:
        line += (f"; warning: {max(at_once, 1)} at once need ~{est * max(at_once, 1) / 2**30:.3g} GiB, more "
                 f"than this machine's {ram / 2**30:.3g} GiB: lower grid.width, train.batch_size or "
                 f"--max-concurrent")
    return line


def describe_large(sweep: SweepConfig) -> str:
    """The dry-run report of a grid above the trial cap: its size, without expanding it."""
    return (f"sweep {sweep.name} ({sweep.path}): task {sweep.task}, {sweep.train.epochs} epochs\n"
            f"trials: {sweep.grid_size():,} ({' x '.join(f'{n} {k}' for n, k in sweep.size_factors())}): "
            f"above the cap of {sweep.max_trials:,} (max_trials); not listed")


def search_lines(sweep: SweepConfig) -> list[str]:
    """The dry run's description of `search:` (each sampled key and its distribution)."""
    s = sweep.search
    if s is None:
        return []
    from deepthink.search import is_integer_key
    grid = math.prod(len(v) for v in sweep.grid.values())
    count = f"{s.num_samples} samples" + (f" x {grid} grid points" if grid > 1 else "") + \
        f" x {len(sweep.seeds)} seeds = {s.num_samples * grid * len(sweep.seeds)} trials"
    if sweep.adaptive:
        head = (f"search: optuna (Optuna's TPE through Ray Tune; search seed {s.seed}), {count}: TPE proposes each "
                f"sample during the run, trains it with every seed and is told the mean {s.metric} "
                f"(each trial's last epoch; mode {s.direction})")
    else:
        head = (f"search: random, {count}; the samples are drawn now with search seed {s.seed} (numpy; the "
                f"same file gives the same trials, more samples keep these)")
    width = max(len(k) for k in sweep.space)
    return [head] + [f"  {k.ljust(width)}  {d.describe(is_integer_key(k))}" for k, d in sweep.space.items()]


def scheduler_lines(sweep: SweepConfig) -> list[str]:
    s = sweep.scheduler
    if s is None:
        return []
    max_t = s.max_t or sweep.max_epochs()
    rungs = ", ".join(f"{r:g}" for r in s.rungs(max_t))
    return [f"early stopping: ASHA on {s.metric} ({s.direction}), rungs at epochs {rungs} (grace_period "
            f"{s.grace_period}, reduction_factor {s.reduction_factor:g}, max_t {max_t}): a trial outside the best "
            f"1/{s.reduction_factor:g} at a rung stops there; its last weights are evaluated and its rows say "
            f"status 'stopped' with epochs_completed"]


def describe(sweep: SweepConfig, trials: list[TrialConfig], cap: Capacity, uri: str,
             max_concurrent: int | None) -> str:
    """The dry-run report."""
    r = sweep.resources
    product = sweep.grid_size()
    n_trials = sweep.n_trials(trials)
    now, full = concurrency(cap, r.cpu, r.gpu)
    limit = min(x for x in (now, max_concurrent) if x is not None)
    at_once = min(limit, n_trials)
    res = f"{r.cpu:g} CPU" + (f", {r.gpu:g} GPU" if r.gpu else "")
    where = (f"{cap.where}: {cap.total('CPU'):g} CPUs, {cap.total('GPU'):g} GPUs"
             + (f" on {len(cap.nodes)} nodes" if cap.cluster else ""))
    lines = [
        f"sweep {sweep.name} ({sweep.path}): task {sweep.task}, train difficulty {sweep.data.train}, "
        f"eval {sweep.data.eval}, {sweep.train.epochs} epochs, test iterations 1..{sweep.test.iterations}",
        "",
        trial_table(trials) if trials else
        f"(the trials are proposed during the run; every one starts from {sweep.template().trial_name} "
        f"with the sampled keys set)",
        "",
        f"trials: {n_trials} ({' x '.join(f'{n} {k}' for n, k in sweep.size_factors())}"
        + (f" = {product}, less {product - n_trials} that would repeat a trial)" if product != n_trials else ")"),
        *(f"  {line}" for line in sweep.unused_settings()),
        *search_lines(sweep),
        *scheduler_lines(sweep),
        f"resources per trial: {res}" + (f" ({round(1 / r.gpu)} trials share a GPU)" if 0 < r.gpu < 1 else ""),
        f"at once: {at_once} on {where}" + (f" (--max-concurrent {max_concurrent})" if max_concurrent else ""),
    ]
    if full is not None:
        lines.append(f"at once with the autoscaler at full size: {min(full, n_trials)}")
    lines.append(memory_line(sweep, trials, cap, at_once))
    lines += cost_lines(sweep, n_trials, at_once)
    lines.append(f"results: {uri}  (retries per trial: max_failures {sweep.max_failures})")
    return "\n".join(lines)
