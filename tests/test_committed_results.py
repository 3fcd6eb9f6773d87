"""The reproductions' committed Parquet (docs/results/data/<sweep>/) is data the analysis reads.

Every directory there must read through `read_results` exactly as `pandas.read_parquet` reads it,
follow the row contract (one row per (trial, split, difficulty, test_iters)), and recompute the
numbers its results page quotes. A new directory is covered by the first two tests for free.

    .venv/bin/python -m pytest tests/test_committed_results.py -q
"""
from pathlib import Path

import pandas as pd
import pytest

from analysis.tables import main as tables_main
from deepthink.results import REQUIRED, ROW_KEY, read_results

DATA = Path(__file__).resolve().parent.parent / "docs" / "results" / "data"
DIRS = sorted(p for p in DATA.iterdir() if p.is_dir()) if DATA.exists() else []


def _load(*names):
    """The committed directories `names`, read as the analysis scripts read them (analysis.common.load)."""
    from analysis.common import load
    return load([str(DATA / name) for name in names])


@pytest.mark.parametrize("path", DIRS, ids=[p.name for p in DIRS])
def test_committed_results_follow_the_contract(path):
    df = read_results(str(path))
    raw = pd.read_parquet(path)
    assert len(df) == len(raw) > 0
    assert set(REQUIRED) <= set(df.columns)
    assert not df.duplicated(ROW_KEY).any()
    assert (df["sweep"] == path.name).all()


def test_paper1_table1_cells_recompute(capsys):
    """The cells quoted in docs/results/paper1_table1_cpu.md and the README."""
    path = DATA / "cpu_paper1_table1"
    assert tables_main([str(path), "--rows", "model", "--cols", "depth", "--split", "test",
                        "--difficulty", "40", "--iteration", "train"]) == 0
    out = capsys.readouterr().out
    for cell in ("| ff_net | 26.24 ± 9.59 | 31.94 ± 10.61 | 23.66 ± 11.73 |",
                 "| recur_net | 14.22 ± 5.43 | 18.36 ± 7.92 | 20.60 ± 10.06 |"):
        assert cell in out, out
    df = read_results(str(path))
    assert df.drop_duplicates("trial_id").groupby(["model", "depth"]).size().eq(5).all()   # 5 seeds a cell
    assert set(df["status"]) == {"ok"}


@pytest.mark.parametrize("name,ff_best", [("quickstart", "23.20%"), ("quickstart_avx2", "24.20%"),
                                           ("quickstart_amd_zen3", "24.87%")])
def test_quickstart_claims_recompute(name, ff_best):
    """docs/results/quickstart.md and the README quote the demo's check on these files: all three
    claims HOLD natively, under ONEDNN_MAX_CPU_ISA=AVX2 and on an AVX2-only AMD EPYC (Zen 3); the previous
    demo's did not."""
    from deepthink.demo import claims
    lines = claims(read_results(str(DATA / name)))
    assert lines[-1] == "Overall: HOLDS (3 of 3 checks hold)", lines
    assert f"ff_net best {ff_best} at iteration 16" in lines[-2], lines
    old = claims(read_results(str(DATA / "quickstart_dt_l_relu_w64")))
    assert old[-1].startswith("Overall: DOES NOT HOLD"), old


def test_demo_recipe_seeds_recompute():
    """docs/models.md: on seeds 20-29, dt_l_relu_gn learns on 10 of 10, dt_l_relu on 7 of 10."""
    for name, model, fitted, mean24 in (("demo_recipe_seeds_gn", "dt_l_relu_gn", 10, 99.98),
                                        ("demo_recipe_seeds", "dt_l_relu", 7, 82.58)):
        df = read_results(str(DATA / name))
        assert set(df["model"]) == {model} and sorted(df["seed"].unique()) == list(range(20, 30))
        train = df[(df.split == "train") & (df.test_iters == 16)]
        assert (train["accuracy"] == 100.0).sum() == fitted
        at32 = df[(df.split == "test") & (df.difficulty == 24) & (df.test_iters == 32)]["accuracy"]
        assert round(at32.mean(), 2) == mean24


def test_dt_l_vs_dt_recall_seed_verdicts_recompute():
    """docs/results/prefix_sums_dt_l_cpu.md: on 512 bits, DT-L holds >= 99% from 230-270 on every
    seed (10 of 10), DT-Recall from 142-196 on 7 of 10; seed 2 is flat at 1.4%, seed 4 overthinks,
    seed 8 never fit its training strings."""
    from analysis.stability import stability
    df = _load("cpu_prefix_sums_dt_l")
    t, _ = stability(df, difficulty=512, threshold=99, start=300, end=1000)
    v = t.set_index(["model", "seed"])
    gn = v.loc["dt_l_relu_gn"]
    assert list(gn.index) == list(range(10))
    assert list(gn["verdict"]) == ["reaches"] * 10
    assert list(gn["holds_from"]) == [270, 235, 266, 246, 238, 245, 230, 253, 231, 237]
    rc = v.loc["dt_recall"]
    assert list(rc["verdict"]) == ["reaches", "reaches", "short", "reaches", "short", "reaches", "reaches", "reaches",
                                   "not learned", "reaches"]
    assert list(rc["holds_from"].dropna()) == [191, 159, 158, 196, 142, 162, 155]
    assert rc.loc[2, "max"] == 1.4 and rc.loc[4, "max"] > 44 and rc.loc[4, "min"] == 22.6   # overthinks
    assert rc.loc[8, "fit"] == 1.4 and rc.loc[8, "max"] == 0.0
    assert set(df["status"]) == {"ok"}
    # the goal's window (from iteration 200): no DT-L seed is >= 99% throughout it
    t200, _ = stability(df, difficulty=512, threshold=99, start=200, end=1000)
    assert (t200[t200["model"] == "dt_l_relu_gn"]["verdict"] == "short").all()


def test_lambda_init_probe_recomputes():
    """docs/results/prefix_sums_dt_l_cpu.md, the lambda_0 experiment on seed 0 (100 strings, to
    iteration 500): 0.5 (the sweep's net) holds 512 bits from 271, 0.7 from 224, 0.9 never learns."""
    from analysis.stability import stability
    got = {}
    for lam0, name in ((0.5, "cpu_prefix_sums_dt_l_eval100_native"), (0.7, "cpu_prefix_sums_dt_l_lam07"),
                       (0.9, "cpu_prefix_sums_dt_l_lam09")):
        df = _load(name)
        df = df[(df["model"] == "dt_l_relu_gn") & (df["seed"] == 0)]
        t, _ = stability(df, difficulty=512, threshold=99, start=200, end=500)
        assert len(t) == 1 and set(df["n_examples"].dropna()) == {100}
        got[lam0] = (t["verdict"].iloc[0], t["holds_from"].iloc[0], t["fit"].iloc[0])
    assert got[0.5][1] == 271 and got[0.7][1] == 224
    assert got[0.9][0] == "not learned" and got[0.9][2] == 49.0


def test_part2_checkpoints_evaluate_the_same_under_avx2():
    """docs/results/prefix_sums_dt_l_cpu.md: the five re-evaluated checkpoints give identical curves
    natively and under ONEDNN_MAX_CPU_ISA=AVX2, at every iteration of every split, and the files say
    which path each side took."""
    from analysis.agreement import agreement
    native = _load("cpu_prefix_sums_dt_l_eval100_native")
    avx2 = _load("cpu_prefix_sums_dt_l_eval100_avx2")
    table, only = agreement(native, avx2, labels=("native", "avx2"))
    assert only == {"only_a": [], "only_b": []} and len(table) == 5 * 5       # 5 trials x 5 curves
    assert (table["differ"] == 0).all() and set(native["n_examples"]) == {100}
    assert sorted(zip(table.drop_duplicates(["model", "seed"])["model"], table.drop_duplicates(["model", "seed"])["seed"])) == [
        ("dt_l_relu_gn", 0), ("dt_l_relu_gn", 1), ("dt_recall", 0), ("dt_recall", 2), ("dt_recall", 4)]
    assert avx2["device"].str.endswith("ONEDNN_MAX_CPU_ISA=AVX2").all()
    assert not native["device"].str.contains("ONEDNN_MAX_CPU_ISA").any()


def test_part2_seeds_trained_under_avx2_keep_their_verdicts():
    """docs/results/prefix_sums_dt_l_cpu.md: DT-L seed 0 and DT-Recall seed 4 trained again under
    ONEDNN_MAX_CPU_ISA=AVX2 take other trajectories (their curves differ from the native twins') and
    keep their verdicts: DT-L holds 512 bits from 262 (native 270), DT-Recall overthinks."""
    from analysis.agreement import agreement
    from analysis.stability import stability
    avx2 = _load("cpu_prefix_sums_dt_l_avx2")
    native = _load("cpu_prefix_sums_dt_l")
    t, _ = stability(avx2, difficulty=512, threshold=99, start=300, end=1000)
    v = t.set_index(["model", "seed"])
    assert sorted(v.index) == [("dt_l_relu_gn", 0), ("dt_recall", 4)]
    assert v.loc[("dt_l_relu_gn", 0), "verdict"] == "reaches" and v.loc[("dt_l_relu_gn", 0), "holds_from"] == 262
    rc = avx2[(avx2["model"] == "dt_recall") & (avx2["split"] == "test") & (avx2["difficulty"] == 512)]
    curve = rc.set_index("test_iters")["accuracy"].sort_index()
    assert curve.max() == 5.0 and curve.loc[1000] == 1.0              # peaks, then overthinks
    table, only = agreement(native, avx2, labels=("native", "avx2"), split="test")
    assert len(table) == 2 * 3 and (table["differ"] > 0).all()       # every curve took another path
    assert len(only["only_b"]) == 0 and len(only["only_a"]) == 2      # the other 18 trials, by model


def test_mazes_dt_l_seeds_recompute():
    """docs/results/mazes_dt_l_cpu.md's per-seed numbers (3 seeds of each model) and verdicts."""
    from analysis.stability import stability
    df = _load("cpu_mazes_dt_l")
    acc = df[df["split"] == "test"].set_index(["model", "seed", "difficulty", "test_iters"])["accuracy"]
    at800 = {"dt_l_relu_gn": {13: [100, 98, 0], 33: [77, 83, 0], 59: [5, 65, 0]},
             "dt_recall": {13: [100, 99, 100], 33: [43, 100, 100], 59: [7, 95, 99]}}
    for model, sizes in at800.items():
        for size, per_seed in sizes.items():
            assert [acc.loc[(model, seed, size, 800)] for seed in range(3)] == per_seed, (model, size)
    t, _ = stability(df, difficulty=33, threshold=95, start=100, end=800)
    v = t.set_index(["model", "seed"])
    assert v.loc[("dt_recall", 1), "holds_from"] == 135 and v.loc[("dt_recall", 2), "holds_from"] == 127
    assert v["holds_from"].isna().sum() == 4
    assert v.loc[("dt_l_relu_gn", 2), "verdict"] == "not learned"
    assert set(df["status"]) == {"ok"} and df["trial_id"].nunique() == 6


def test_mazes_dt_l_baseline_rows_recompute():
    """docs/results/mazes_dt_l_cpu.md's DT and FF baseline rows, seed 0: DT fits 40% / 42% of its
    training / val mazes at its training iteration count, overthinks, and solves no 33x33 or 59x59
    maze; FF fits 9x9 and solves 71% of 13x13, 1% of 33x33, none of 59x59."""
    df = _load("cpu_mazes_dt_l_extras")
    assert set(df["status"]) == {"ok"} and set(df["seed"]) == {0}
    acc = df.set_index(["model", "split", "difficulty", "test_iters"])["accuracy"].sort_index()
    dt = acc.loc["dt_net"]
    assert dt.loc[("train", 9)].max() == 40 and dt.loc[("val", 9)].max() == 42
    assert dt.loc[("val", 9, 30)] == 42 and dt.loc[("val", 9, 100)] == 0
    assert dt.loc[("test", 13)].max() == 5 and dt.loc[("test", 13)].idxmax() == 25
    assert dt.loc[("test", 33)].max() == 0 and dt.loc[("test", 59)].max() == 0
    assert len(dt.loc[("test", 59)]) == 800
    ff = acc.loc["ff_net"]                     # fits 9x9, no iterations beyond its 30 blocks
    assert ff.loc[("val", 9, 30)] == 99 and ff.loc[("test", 13, 30)] == 71
    assert ff.loc[("test", 33)].max() == 1 and ff.loc[("test", 59)].max() == 0
    assert ff.index.get_level_values("test_iters").max() == 30


def test_mazes_dt_l_seed2_paper_recipe_diverged():
    """docs/results/mazes_dt_l_cpu.md: DT-L seed 2 with alpha 0.5 and 3 warm-up epochs diverged in
    epoch 3; the rows are epoch 2's weights, marked diverged, and solve no 33x33 maze."""
    df = _load("cpu_mazes_dt_l_probe_alpha")
    assert set(df["status"]) == {"diverged"} and set(df["epochs_completed"]) == {2}
    assert set(df["alpha"]) == {0.5} and set(df["seed"]) == {2}
    test = df[df["split"] == "test"]
    assert set(test["difficulty"]) == {33} and len(test) == 800 and test["accuracy"].max() == 0


def test_mazes_dt_l_seed3_diverged():
    """docs/results/mazes_dt_l_cpu.md: DT-L seed 3 diverged in epoch 3; its rows (epoch 2's weights,
    evaluated to iteration 100) are marked diverged and solve no test maze."""
    df = _load("cpu_mazes_dt_l_more")
    assert set(df["status"]) == {"diverged"} and set(df["epochs_completed"]) == {2}
    assert set(zip(df["model"], df["seed"])) == {("dt_l_relu_gn", 3)} and df["test_iters"].max() == 100
    assert df[df["split"] == "test"]["accuracy"].max() == 0 and df["accuracy"].max() == 1


def test_nonexpansive_dt_l_quickstart_recompute():
    """docs/models.md's table for dt_l_strict and dt_l_op on the quickstart recipe: per seed, best
    training accuracy and 24 / 32 bits at iteration 32."""
    df = _load("quickstart_strict", "quickstart_op")
    fit = df[df["split"] == "train"].groupby(["model", "seed"])["accuracy"].max()
    test = df[(df["split"] == "test") & (df["test_iters"] == 32)].set_index(["model", "seed", "difficulty"])["accuracy"]
    for model, fits, at24, at32 in [("dt_l_strict", [95.4, 86.4, 87.8], [1.2, 7.2, 9.4], [0.2, 2.6, 2.0]),
                                    ("dt_l_op", [100.0, 96.6, 93.8], [10.0, 8.8, 18.6], [0.8, 2.2, 6.4])]:
        for seed in range(3):
            assert round(fit[(model, seed)], 1) == fits[seed]
            assert round(test[(model, seed, 24)], 1) == at24[seed]
            assert round(test[(model, seed, 32)], 1) == at32[seed]
    assert set(df["status"]) == {"ok"}
    # seed 0 of each trained again under ONEDNN_MAX_CPU_ISA=AVX2: the same verdict
    avx2 = _load("quickstart_strict_avx2", "quickstart_op_avx2")
    fit = avx2[avx2["split"] == "train"].groupby("model")["accuracy"].max()
    at24 = avx2[(avx2["split"] == "test") & (avx2["test_iters"] == 32) & (avx2["difficulty"] == 24)]
    assert set(avx2["seed"]) == {0} and set(avx2["device"].str.contains("AVX2")) == {True}
    assert round(fit["dt_l_strict"], 1) == 86.4 and round(fit["dt_l_op"], 1) == 99.6
    assert at24.set_index("model")["accuracy"].round(1).to_dict() == {"dt_l_strict": 6.8, "dt_l_op": 8.8}


def test_mazes_dt_l_avx2_reevaluation_is_identical():
    """docs/results/mazes_dt_l_cpu.md: two checkpoints evaluated again under ONEDNN_MAX_CPU_ISA=AVX2
    give the native 33x33 curves exactly, at all 800 iterations."""
    key = ["model", "seed", "difficulty", "test_iters"]
    native, avx2 = (_load(name) for name in ("cpu_mazes_dt_l", "cpu_mazes_dt_l_avx2"))
    avx2 = avx2[avx2["split"] == "test"].set_index(key)["accuracy"]
    assert len(avx2) == 2 * 800 and set(avx2.index.get_level_values("difficulty")) == {33}
    native = native[native["split"] == "test"].set_index(key)["accuracy"].loc[avx2.index]
    assert (native == avx2).all()


def test_prefix_sums_dt_l_amd_zen3_recomputes():
    """docs/results/prefix_sums_dt_l_cpu.md, trained on an AVX2-only AMD EPYC (Zen 3): DT-L seeds 0
    and 1 fit and hold 100% on 512 bits from iterations 282 and 231 to 1000 (Xeon: 270, 235), at
    0.0% and 10.6% at iteration 200."""
    from analysis.stability import stability
    df = _load("cpu_prefix_sums_dt_l_amd_zen3")
    assert set(df["model"]) == {"dt_l_relu_gn"} and sorted(df["seed"].unique()) == [0, 1]
    assert set(df["status"]) == {"ok"} and df["device"].str.contains("AMD EPYC").all()
    t, _ = stability(df, difficulty=512, threshold=99, start=300, end=1000)
    assert list(t["verdict"]) == ["reaches", "reaches"] and list(t["holds_from"]) == [282, 231]
    assert list(t["fit"]) == [100.0, 100.0] and list(t["min"]) == [100.0, 100.0]
    at200 = df[(df.split == "test") & (df.difficulty == 512) & (df.test_iters == 200)].sort_values("seed")
    assert list(at200["accuracy"]) == [0.0, 10.6]


def test_prefix_sums_dt_recall_seed4_amd_zen3_fails_again():
    """docs/results/prefix_sums_dt_l_cpu.md: DT-Recall seed 4 trained on the AMD EPYC (Zen 3), 100
    strings per size: fits, then overthinks on 48 / 128 bits (100 -> 85, 94 -> 71) and never reaches
    99% on 512 bits (best 51% at 434, 43% at 1000), as on the Xeon."""
    df = _load("cpu_prefix_sums_dt_l_amd_zen3_eval100")
    assert set(df["model"]) == {"dt_recall"} and set(df["seed"]) == {4} and set(df["n_examples"]) == {100}
    test = df[df["split"] == "test"].set_index(["difficulty", "test_iters"])["accuracy"].sort_index()
    for bits, peak, at, last in ((48, 100.0, 16, 85.0), (128, 94.0, 42, 71.0), (512, 51.0, 434, 43.0)):
        curve = test.loc[bits]
        assert (curve.max(), curve.idxmax(), curve.loc[1000]) == (peak, at, last), bits
    fit = df[(df["split"] == "train") & (df["test_iters"] == 30)]["accuracy"]
    assert list(fit) == [100.0]
