"""Task-level scoring: hand-worked MultiRC/ReCoRD, rank classification, splits and averages."""
import collections
import dataclasses

import pytest

from t2t.data import registry, sources
from t2t.eval import evaluator
import t2t.tasks  # noqa: F401  (registers the built-in tasks)


def in_memory(name, **splits):
    return dataclasses.replace(registry.get_task(name), source=sources.InMemorySource(splits))


def multirc(question, answer, label):
    return {"paragraph": "Tom ran. He won.", "question": f"q{question}", "answer": f"a{answer}",
            "label": label, "idx": {"paragraph": 0, "question": question, "answer": answer}}


MULTIRC = in_memory("super_glue_multirc", validation=[
    multirc(0, 0, 1), multirc(0, 1, 0), multirc(0, 2, 1), multirc(1, 0, 0), multirc(1, 1, 1)])


@pytest.mark.parametrize("predictions,f1,exact_match", [
    # targets 1 0 1 | 0 1. TP=2 FP=0 FN=1 -> F1 0.8; question 0 wrong, question 1 right.
    (["True", "False", "False", "False", "True"], 80.0, 50.0),
    # "maybe" is invalid: for target 0 it counts as a false positive. TP=2 FP=1 FN=1 -> 2/3.
    (["True", "False", "False", "maybe", "True"], 200 / 3, 0.0),
    (["True", "False", "True", "False", "True"], 100.0, 100.0),
])
def test_multirc_hand_worked(predictions, f1, exact_match):
    metrics = evaluator.evaluate_task(MULTIRC, "validation", predictions=predictions).metrics
    assert metrics == pytest.approx({"f1": f1, "exact_match": exact_match})


def record(query, answers):
    return {"passage": "The Pope met Obama.", "query": f"@placeholder {query}", "entities": ["Obama", "Pope"],
            "answers": answers, "idx": {"passage": 0, "query": query}}


def test_record_hand_worked_keeps_the_first_copy_of_each_query():
    task = in_memory("super_glue_record", validation=[record(7, ["Obama"]), record(8, ["Obama", "Pope"])])
    examples = evaluator.text_examples(task, "validation")
    assert [ex["targets"] for ex in examples] == ["Obama", "Obama", "Pope"]
    # Query 7: "the Obama" -> "obama": EM 1, F1 1. Query 8 (first copy): "Pope Francis" vs
    # {obama, pope}: EM 0, F1 max(0, P=1/2 R=1 -> 2/3). The second copy's "Obama" is ignored.
    result = evaluator.evaluate_task(task, "validation", examples=examples,
                                     predictions=["the Obama", "Pope Francis", "Obama"])
    assert result.metrics == pytest.approx({"em": 50.0, "f1": 100 * (1 + 2 / 3) / 2})


def test_rank_classification_picks_the_best_scored_candidate():
    rte = in_memory("glue_rte", validation=[
        {"sentence1": "A man sleeps.", "sentence2": "A person sleeps.", "label": 0, "idx": 0},
        {"sentence1": "A man sleeps.", "sentence2": "A dog runs.", "label": 1, "idx": 1}])
    seen = []

    def score_fn(examples, targets):  # a stand-in model: prefers "not_entailment" for dogs
        seen.extend(zip([ex["idx"] for ex in examples], targets))
        return [float(("dog" in ex["inputs_pretokenized"]) == (t == "not_entailment"))
                for ex, t in zip(examples, targets)]

    result = evaluator.evaluate_task(rte, "validation", score_fn=score_fn)
    assert seen == [(0, "entailment"), (0, "not_entailment"), (1, "entailment"), (1, "not_entailment")]
    assert result.predictions == ["entailment", "not_entailment"] and result.metrics == {"accuracy": 100.0}
    assert result.prediction_records()[1] == {
        "input": "rte sentence1: A man sleeps. sentence2: A dog runs.", "target": "not_entailment",
        "prediction": "not_entailment"}


def test_rank_classification_over_record_entities_and_not_for_wsc():
    task = in_memory("super_glue_record", validation=[record(7, ["Pope"])])
    result = evaluator.evaluate_task(task, "validation", score_fn=lambda ex, t: [len(x) for x in t])
    assert result.predictions == ["Obama"] and result.metrics["em"] == 0.0
    wsc = in_memory("super_glue_wsc", validation=[{
        "text": "Tom said he won.", "span1_index": 0, "span2_index": 2, "span1_text": "Tom",
        "span2_text": "he", "label": 1, "idx": 0}])
    with pytest.raises(ValueError, match="no candidate targets.*decode"):
        evaluator.evaluate_task(wsc, "validation", score_fn=lambda ex, t: [0.0] * len(t))


def test_predict_fn_and_argument_checks():
    cb = in_memory("super_glue_cb", validation=[
        {"premise": "p", "hypothesis": "h", "label": label, "idx": i} for i, label in enumerate([0, 1, 2, 2])])
    result = evaluator.evaluate_task(cb, "validation", predict_fn=lambda exs: ["neutral"] * len(exs))
    # Accuracy 2/4. Per-class F1: entailment 0, contradiction 0, neutral (P=1/2, R=1) 2/3.
    assert result.metrics == pytest.approx({"mean_3class_f1": 100 * (2 / 3) / 3, "accuracy": 50.0})
    with pytest.raises(ValueError, match="exactly one"):
        evaluator.evaluate_task(cb, "validation")
    with pytest.raises(ValueError, match="3 predictions for 4 examples"):
        evaluator.evaluate_task(cb, "validation", predictions=["neutral"] * 3)
    with pytest.raises(TypeError, match="prediction 0 is int"):
        evaluator.evaluate_task(cb, "validation", predictions=[0, 1, 2, 2])


def test_splits_tasks_and_averages():
    mnli = registry.get_task("glue_mnli")
    assert evaluator.eval_splits(mnli, "validation") == ["validation_matched", "validation_mismatched"]
    with pytest.raises(ValueError, match="has no split 'dev'"):
        evaluator.eval_splits(mnli, "dev")
    names = [t.name for t in evaluator.resolve_tasks(["glue_rte", "glue", "super_glue_cb"])]
    assert names[:2] == ["glue_rte", "glue_cola"] and names.count("glue_rte") == 1 and len(names) == 9
    with pytest.raises(KeyError, match="did you mean super_glue_boolq"):
        evaluator.resolve_tasks(["super_glue_boolg"])
    by_split = collections.defaultdict(dict)
    for groups in evaluator.metrics_lib.SUPER_GLUE_AVERAGE_GROUPS.values():
        for task, split, metric in groups:
            by_split[(task, split)][metric] = 90.0
    results = [evaluator.TaskResult(task, split, m, [], []) for (task, split), m in by_split.items()]
    groups = {g: 90.0 for g in evaluator.metrics_lib.SUPER_GLUE_AVERAGE_GROUPS}
    assert evaluator.benchmark_averages(results) == [
        {"task": "super_glue", "split": "validation", "metrics": {"average": 90.0, **groups}}]
    assert evaluator.benchmark_averages(results[1:]) == []
