"""Statistics on known inputs, checked against SciPy and hand-computed values."""

import math
import typing

import numpy as np
import pytest
from scipy import stats

from studies import report
from studies.spec import ActivationResult, StudyOutcome, StudyResults, TrialCounts, TrialStatus, TrialSummary, parse_spec


def test_summarize_matches_t_interval():
    values = [0.80, 0.82, 0.85, 0.79]
    s = report.summarize(values)
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert s.ci95 == pytest.approx((s.mean - half, s.mean + half))


def test_summarize_single_value_has_no_width():
    assert report.summarize([0.5]).model_dump() == {"n": 1, "values": [0.5], "mean": 0.5, "std": 0.0, "ci95": (0.5, 0.5)}


def test_holm_known_values():
    adjusted = report.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    # sorted: a 0.01*3=0.03; c 0.03*2=0.06; b max(0.06, 0.04*1)=0.06
    assert adjusted["a"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06)
    assert math.isnan(adjusted["d"])


def test_holm_caps_at_one():
    assert report.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def test_paired_vs_baseline_uses_shared_seeds_and_scipy():
    base = {1: 0.70, 2: 0.72, 3: 0.71, 4: 0.69}
    better = {1: 0.75, 2: 0.78, 3: 0.74, 4: 0.76}
    same = {1: 0.70, 2: 0.73, 3: 0.70, 9: 0.99}  # seed 9 has no pair and is ignored
    out = report.paired_vs_baseline({"relu": base, "telu": better, "gelu": same}, "relu")
    p_better = stats.ttest_rel([0.75, 0.78, 0.74, 0.76], [0.70, 0.72, 0.71, 0.69]).pvalue
    p_same = stats.ttest_rel([0.70, 0.73, 0.70], [0.70, 0.72, 0.71]).pvalue
    assert out["telu"].p_value == pytest.approx(p_better)
    assert out["gelu"].n_pairs == 3
    assert out["gelu"].p_value == pytest.approx(p_same)
    assert out["telu"].p_holm == pytest.approx(min(1, 2 * min(p_better, p_same)))
    assert out["telu"].significant and not out["gelu"].significant
    assert out["telu"].mean_diff == pytest.approx(0.0525)  # (0.05 + 0.06 + 0.03 + 0.07) / 4


def test_paired_with_one_seed_is_not_tested():
    out = report.paired_vs_baseline({"relu": {1: 0.5}, "telu": {1: 0.6}}, "relu")
    assert math.isnan(out["telu"].p_value) and not out["telu"].significant


def test_rank_and_tables():
    counts = {"completed": 2}
    acts = {
        "relu": {"best_params": {"lr": 0.01, "l2": 1e-5}, "best_val_acc": 0.7, "trials": counts,
                 "test_acc": report.summarize([0.70, 0.72]), "vs_baseline": None},
        "telu": {"best_params": {"lr": 0.02, "l2": 1e-4}, "best_val_acc": 0.8, "trials": counts,
                 "test_acc": report.summarize([0.80, 0.82]),
                 "vs_baseline": {"mean_diff": 0.1, "n_pairs": 2, "p_value": 0.01, "p_holm": 0.01, "significant": True}},
    }
    ranking = report.rank({k: v["test_acc"] for k, v in acts.items()})
    assert ranking == ["telu", "relu"]
    results = StudyResults(study_id="x", name="t", baseline="relu", seeds=[1, 2], ranking=ranking, best_activation=ranking[0],
                           activations=acts)
    md = report.ranking_markdown(results)
    assert md.splitlines()[2].startswith("| 1 | telu | 0.8100") and "0.1000 *" in md
    csv_text = report.ranking_csv(results)
    assert csv_text.splitlines()[0].startswith("rank,activation,test_acc_mean")
    assert csv_text.splitlines()[1].startswith("1,telu,0.81")


def test_trial_counts_cover_every_way_a_trial_ends():
    assert set(TrialCounts.model_fields) == set(typing.get_args(TrialStatus))


def test_results_stored_before_typing_still_read():
    """A study that finished before results were typed stored {} for an activation with no completed trial."""
    old = {"best_params": {}, "best_val_acc": None, "trials": {"diverged": 2},
           "test_acc": {"n": 0, "values": [], "mean": None, "std": None, "ci95": [None, None]}, "vs_baseline": None}
    assert ActivationResult.model_validate(old).best_params is None


def _study(vs: dict[str, dict | None], baseline: str = "relu", seeds: int = 3) -> StudyResults:
    acts = {}
    for i, (label, test) in enumerate(vs.items()):
        acts[label] = {"best_params": {"lr": 0.01, "l2": 1e-5}, "best_val_acc": 0.7, "trials": {"completed": 2},
                       "test_acc": report.summarize([0.7 + 0.01 * i] * seeds), "vs_baseline": test}
    ranking = report.rank({k: ActivationResult.model_validate(v).test_acc for k, v in acts.items()})
    return StudyResults(study_id="x", name="cmp", baseline=baseline, seeds=list(range(seeds)), ranking=ranking,
                        best_activation=ranking[0], activations=acts)


def _vs(diff: float, p: float | None) -> dict:
    return {"mean_diff": diff, "n_pairs": 3, "p_value": p, "p_holm": p, "significant": p is not None and p < report.ALPHA}


def test_the_verdict_names_better_worse_indistinguishable_and_untested():
    results = _study({"relu": None, "telu": _vs(0.05, 0.001), "gelu": _vs(0.01, 0.4), "silu": _vs(0.02, 0.3),
                      "mish": _vs(-0.04, 0.01), "pwlu": _vs(0.0, None)})
    v = report.verdict(results)
    assert v.startswith("Against relu, over 3 seeds (paired t-test on test accuracy, Holm-adjusted, α = 0.05): ")
    assert "telu is significantly better than relu" in v
    assert "mish is significantly worse than relu" in v
    # In rank order, joined as a sentence.
    assert "silu and gelu are indistinguishable from relu" in v
    assert "not testable, so neither better nor worse: pwlu (no confirmation scores)" in v
    assert report.verdict(_study({"relu": None}, seeds=1)) == "Only the baseline, relu, was compared."
    assert "over 1 seed (" in report.verdict(_study({"relu": None, "telu": _vs(0.1, None)}, seeds=1))


def test_the_study_markdown_leaves_the_spec_out_rather_than_overflow_mlflow():
    results = _study({"relu": None, "telu": _vs(0.05, 0.001)})
    md = report.study_markdown(results, "name: cmp\n", [("Test accuracy", "get-artifact?path=plots/a.png&run_uuid=r")],
                               [("relu's run", "#/experiments/1/runs/r")])
    assert md.startswith("## cmp: telu ranks first\n") and report.verdict(results) in md
    assert report.ranking_markdown(results) in md
    assert "![Test accuracy](get-artifact?path=plots/a.png&run_uuid=r)" in md and "- [relu's run](#/experiments/1/runs/r)" in md
    assert md.rstrip().endswith("```yaml\nname: cmp\n```")
    big_spec = "x: " + "y" * 8000
    short = report.study_markdown(results, big_spec, [], [])
    assert len(short) <= 7900 and "Study spec" not in short and report.ranking_markdown(results) in short


# --- honest statistics at the edge: no variance, no test -------------------------------------------------


def test_the_same_difference_on_every_seed_is_not_testable():
    """With 2 seeds (the demo) and accuracy in steps of 0.001, a constant difference is easy to hit: the paired
    t statistic is then ±inf (SciPy says NaN), which is no evidence of anything; it once read as p = 0."""
    scores = {"relu": {1: 0.500, 2: 0.600}, "telu": {1: 0.510, 2: 0.610}, "gelu": {1: 0.520, 2: 0.630}}
    out = report.paired_vs_baseline(scores, "relu")
    telu = out["telu"]
    assert math.isnan(telu.p_value) and math.isnan(telu.p_holm) and not telu.significant
    assert telu.not_testable == "the same difference to relu (+0.0100) on every seed (zero variance)"
    assert telu.mean_diff == pytest.approx(0.01) and telu.n_pairs == 2
    # gelu's differences vary (0.02, 0.03): it is tested, and Holm counts only the tested comparisons.
    assert out["gelu"].not_testable is None and out["gelu"].p_value == pytest.approx(stats.ttest_rel([0.52, 0.63], [0.5, 0.6]).pvalue)
    assert out["gelu"].p_holm == pytest.approx(out["gelu"].p_value)
    assert telu.plain()["p_value"] is None and telu.plain()["not_testable"].startswith("the same difference")


def test_identical_scores_are_not_testable_either():
    out = report.paired_vs_baseline({"relu": {1: 0.5, 2: 0.6, 3: 0.7}, "silu": {1: 0.5, 2: 0.6, 3: 0.7}}, "relu")
    assert math.isnan(out["silu"].p_value) and not out["silu"].significant
    assert out["silu"].not_testable == "the same test accuracy as relu on every seed (zero variance)"


def test_fewer_than_two_shared_seeds_are_not_testable():
    out = report.paired_vs_baseline({"relu": {1: 0.5, 2: 0.6}, "telu": {2: 0.9, 3: 0.9}}, "relu")
    assert math.isnan(out["telu"].p_value) and not out["telu"].significant
    assert out["telu"].not_testable == "fewer than 2 seeds shared with relu (1)"


def _built(scores: dict[str, dict[int, float]]) -> StudyResults:
    trials = {label: [] for label in scores}
    best = {label: TrialSummary(number=0, key="a0-t0", lr=0.01, l2=1e-4, status="completed", epochs=3, val_acc=0.5)
            for label in scores}
    spec = parse_spec({"activations": list(scores), "confirm": {"seeds": 2}})
    return report.build_results(spec, "x", StudyOutcome(trials=trials, best=best, scores=scores))


def test_the_verdict_and_the_ranking_say_why_a_comparison_is_not_testable():
    results = _built({"relu": {1000: 0.500, 1001: 0.600}, "telu": {1000: 0.510, 1001: 0.610}})
    v = report.verdict(results)
    assert "significantly" not in v
    assert "not testable, so neither better nor worse: telu (the same difference to relu (+0.0100) on every seed (zero variance))" in v
    md = report.ranking_markdown(results)
    telu_row = next(line for line in md.splitlines() if line.startswith("| 1 | telu"))
    assert "not testable" in telu_row and " *" not in telu_row
    assert "- telu: not testable, the same difference to relu (+0.0100) on every seed (zero variance)" in md
    row = next(r for r in report.ranking_rows(results) if r["activation"] == "telu")
    assert row["not_testable"] and not row["significant"] and math.isnan(row["p_holm"])
    assert "not_testable" in report.ranking_csv(results).splitlines()[0]
