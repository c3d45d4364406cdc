"""T5's metrics and postprocessors against scikit-learn/scipy and hand-worked cases."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from t2t.tasks import metrics, postprocess

@pytest.mark.parametrize("seed", range(3))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.7, targets, 1 - targets)
    assert metrics.accuracy(targets, predictions) == {"accuracy": 100 * skm.accuracy_score(targets, predictions)}
    assert metrics.matthews_corrcoef(targets, predictions)["matthews_corrcoef"] == pytest.approx(
        100 * skm.matthews_corrcoef(targets, predictions))
    assert metrics.f1_score_with_invalid(targets, predictions)["f1"] == pytest.approx(
        100 * skm.f1_score(targets, predictions))
    three_t, three_p = rng.integers(0, 3, 100), rng.integers(-1, 3, 100)  # -1: invalid prediction
    assert metrics.mean_multiclass_f1(3)(three_t, three_p)["mean_3class_f1"] == pytest.approx(
        100 * np.mean(skm.f1_score(three_t, three_p, labels=[0, 1, 2], average=None)))


@pytest.mark.parametrize("seed", range(3))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 26, 300) / 5
    predictions = np.clip(targets + rng.normal(0, 1, 300), 0, 5).round(1)
    assert metrics.pearson_corrcoef(targets, predictions)["pearson_corrcoef"] == pytest.approx(
        100 * stats.pearsonr(targets, predictions)[0])
    assert metrics.spearman_corrcoef(targets, predictions)["spearman_corrcoef"] == pytest.approx(
        100 * stats.spearmanr(targets, predictions)[0])


def test_f1_counts_invalid_predictions_as_wrong():
    # Invalid for a positive target -> false negative; for a negative target -> false positive.
    # TP=1, FP=1, FN=1: precision = recall = 1/2, F1 = 1/2.
    assert metrics.f1_score_with_invalid([1, 1, 0, 0], [1, -1, 0, -1]) == {"f1": 50.0}


def test_squad_max_over_answers_hand_worked():
    targets = [["the Cat"], ["New York", "NYC"], ["a b c d"]]
    predictions = ["cat!", "new york city", "b c x"]
    # EM: 1, 0, 0. F1: 1; max(f1("new york", "new york city") = 0.8, 0);
    # "a b c d" loses the article "a": "b c d" vs "b c x": P = R = 2/3 -> 2/3.
    out = metrics.squad(targets, predictions)
    assert out["em"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 0.8 + 2 / 3) / 3)
    assert metrics.normalize_squad("The  Quick, brown-fox an apple!") == "quick brownfox apple"


def test_group_metrics_hand_worked():
    targets = [{"group": "a", "value": 1}, {"group": "a", "value": 0}, {"group": "b", "value": 1}]
    predictions = [{"value": 1}, {"value": 1}, {"value": 1}]
    assert metrics.mean_group_metric(metrics.all_match)(targets, predictions) == {"exact_match": 50.0}
    dedup = metrics.deduplicate_metric(metrics.accuracy)(targets, predictions)
    assert dedup == {"accuracy": 100.0}  # the second "a" is ignored


def test_length_mismatch_and_empty_input_are_errors():
    with pytest.raises(ValueError, match="3 targets but 2 predictions"):
        metrics.accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="no examples"):
        metrics.squad([], [])


def test_benchmark_average_averages_within_then_across_groups():
    results = {(t, s): {} for groups in metrics.GLUE_AVERAGE_GROUPS.values() for t, s, _ in groups}
    for group in metrics.GLUE_AVERAGE_GROUPS.values():
        for task, split, metric in group:
            results[(task, split)][metric] = 80.0
    results[("glue_mrpc", "validation")]["f1"] = 90.0          # MRPC group: 85
    results[("glue_mnli", "validation_mismatched")]["accuracy"] = 60.0  # MNLI group: 70
    out = metrics.benchmark_average(results, "glue")
    assert out["MRPC"] == 85.0 and out["MNLI"] == 70.0
    assert out["average"] == pytest.approx((6 * 80 + 85 + 70) / 8)
    del results[("glue_qqp", "validation")]
    assert metrics.benchmark_average(results, "glue") is None


def test_postprocessors():
    to_id = postprocess.label_to_class_id(("entailment", "not_entailment"))
    assert (to_id("not_entailment"), to_id("entailment"), to_id("Entailment")) == (1, 0, -1)
    assert postprocess.string_to_float("3.8") == 3.8 and postprocess.string_to_float("high") == -1.0
    example = {"idx/question": 7, "idx/passage": 1, "idx/query": 2, "answers": ["A", "B"]}
    assert postprocess.multirc("True", example, is_target=True) == {"value": 1, "group": 7}
    assert postprocess.multirc("yes") == {"value": -1}
    assert postprocess.record("B", example, is_target=True) == {"value": ["A", "B"], "group": (1, 2)}


@pytest.mark.parametrize("prediction,referent,expected", [
    ("the city councilmen", "The city councilmen", 1),
    ("councilmen", "The city councilmen", 1),      # subset of the referent's words
    ("The city councilmen of Oz", "councilmen", 1),  # superset
    ("the demonstrators", "The city councilmen", 0),
    ("Bob's hat", "Bob", 0),                       # an apostrophe on one side only
])
def test_wsc_referent_matching(prediction, referent, expected):
    example = {"targets_pretokenized": referent, "label": 0}
    assert postprocess.wsc_simple(prediction, example) == expected
    assert postprocess.wsc_simple(referent, example, is_target=True) == 0
