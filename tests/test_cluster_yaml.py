"""cluster.yaml and cluster-local.yaml validate offline exactly as `ray up` does, and say what the
README promises: a CPU head, spot GPU workers autoscaling from 0, integer node resources, and the
README's install order. Also: the sweep planner reads the prepared config the way it reads the
~/ray_bootstrap_config.yaml that `ray up` leaves on the head node.

No cloud access: prepare_config + validate_config are the two steps `ray up` runs before it talks
to a provider (ray.autoscaler._private.commands._bootstrap_config).
"""
import copy
import tomllib
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from deepthink.config import parse_sweep
from deepthink.sweep import plan

ROOT = Path(__file__).resolve().parent.parent


def _prepared(name):
    raw = yaml.safe_load((ROOT / name).read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)        # raises jsonschema.ValidationError on any schema violation
    return raw, prepared


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_validates_like_ray_up(name):
    raw, prepared = _prepared(name)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_schema_check_is_real():
    """The same two steps reject a broken copy (so the test above can fail)."""
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["available_node_types"]["gpu_worker"]["resources"] = {"CPU": 4, "GPU": 0.5}
    with pytest.raises(Exception, match="0.5"):
        validate_config(prepare_config(raw))


def test_aws_head_is_cpu_and_workers_are_spot_gpus_from_zero():
    raw, prepared = _prepared("cluster.yaml")
    assert raw["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != prepared["head_node_type"]]
    assert workers
    for t in workers:
        assert t["min_workers"] == 0 and t["max_workers"] >= 1
        assert t["resources"]["GPU"] >= 1
        assert t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    for t in types.values():
        assert all(isinstance(v, int) and not isinstance(v, bool) for v in t["resources"].values())


def _position(commands, needle):
    hits = [i for i, c in enumerate(commands) if needle in c]
    assert hits, f"no setup command contains {needle!r}: {commands}"
    return hits[0]


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_setup_installs_like_the_readme(name):
    _, prepared = _prepared(name)
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_pin = next(p for p in pins if p.startswith("ray"))
    assert ray_pin.endswith(f"=={ray.__version__}")
    for key in ("head_setup_commands", "worker_setup_commands"):
        cmds = prepared[key]      # prepare_config merged setup_commands in front
        torch_at = _position(cmds, "torch==")
        e2h_at = _position(cmds, "easy-to-hard-data==1.0.0")
        pkg_at = _position(cmds, "install -q -e ~/deepthink")
        assert torch_at < e2h_at < pkg_at
        assert "--no-deps" in cmds[e2h_at]
        assert any(f"ray[default]=={ray.__version__}" in c for c in cmds)


def test_local_variant_lists_its_machines():
    raw, _ = _prepared("cluster-local.yaml")
    assert raw["provider"]["type"] == "local"
    assert raw["provider"]["head_ip"] and raw["provider"]["worker_ips"]
    assert "available_node_types" not in raw, "the local provider defines its node type itself"


def test_planner_reads_the_cluster_as_the_head_node_would(tmp_path):
    """A 0.25-GPU sweep on cluster.yaml: feasible (GPUs arrive by autoscaling) although the head
    has none, and 8 workers x 4 trials run at once at full size."""
    _, prepared = _prepared("cluster.yaml")
    head = prepared["available_node_types"][prepared["head_node_type"]]["resources"]
    cap = plan.Capacity("the cluster at auto", [{k: float(v) for k, v in head.items()}],
                        plan.worker_types(prepared))
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "s", "task": "prefix_sums", "grid": {"model": ["dt_recall"], "max_iters": [2], "width": [8]},
        "resources": {"cpu": 1, "gpu": 0.25}}))
    sweep = parse_sweep(sweep_file)
    plan.check_feasible(sweep, cap)
    now, full = plan.concurrency(cap, 1, 0.25)
    assert (now, full) == (0, 8 * 4)
    # ...and a node-local results path is refused there: workers would not see it.
    assert "s3://" in plan.storage_problem(str(tmp_path), cap, None)
    assert plan.storage_problem("s3://bucket/results", cap, None) is None
