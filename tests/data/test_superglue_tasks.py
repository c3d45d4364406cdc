"""SuperGLUE tasks: JSONL readers to TFDS shape, T5's exact text formats, counts and metrics."""
import dataclasses
import functools
import json

import pytest

from t2t.data import registry, sources
from t2t.tasks import formats, superglue
from t2t.eval import evaluator
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

VALIDATION_COUNTS = {
    ("super_glue_boolq", "validation"): 3270, ("super_glue_cb", "validation"): 56,
    ("super_glue_copa", "validation"): 100, ("super_glue_multirc", "validation"): 4848,
    ("super_glue_rte", "validation"): 277, ("super_glue_wic", "validation"): 638,
    ("super_glue_wsc", "validation"): 104, ("super_glue_axb", "test"): 1104, ("super_glue_axg", "test"): 356,
}
METRIC_NAMES = {"super_glue_cb": ["accuracy", "mean_3class_f1"], "super_glue_multirc": ["exact_match", "f1"],
                "super_glue_axb": [], "super_glue_axg": []}


def in_memory(name, **splits):
    return dataclasses.replace(registry.get_task(name), source=sources.InMemorySource(splits))


@functools.lru_cache(maxsize=None)
def real_examples(name, split, data_dir):
    return evaluator.text_examples(registry.get_task(name), split, data_dir)


def first_json(data_dir, path):
    with open(data_dir / "superglue" / path, encoding="utf-8") as f:
        return json.loads(f.readline())


# ------------------------------------------------------------------ registry
def test_every_superglue_task_and_the_mixture():
    for spec in superglue.SPECS:
        assert registry.get_task(spec.task_name).splits == tuple(spec.files)
    rates = dict(registry.get_mixture("super_glue").tasks)
    assert rates["super_glue_record"] == 138_854 and rates["super_glue_wsc"] == 259
    assert "super_glue_axb" not in rates and len(rates) == 8


# ------------------------------------------------------------------ T5 formats (TFDS-shaped input)
RECORD_PASSAGE = 'The Pope met Obama.\n@highlight\nObama visits Rome\n@highlight\nHe said "hi"'


def test_record_highlights_entities_and_one_example_per_answer():
    ex = {"passage": RECORD_PASSAGE, "query": "@placeholder visits Rome.", "entities": ["Obama", "Pope"],
          "answers": ["Obama", "Pope"], "idx": {"passage": 3, "query": 8}}
    out = evaluator.text_examples(in_memory("super_glue_record", validation=[ex]), "validation")
    inputs = ('record query: @placeholder visits Rome. entities: Obama, Pope passage: The Pope met Obama. '
              'Obama visits Rome. He said "hi"')
    assert [(o["inputs"], o["targets"]) for o in out] == [(inputs, "Obama"), (inputs, "Pope")]
    assert all(o["answers"] == ["Obama", "Pope"] and (o["idx/passage"], o["idx/query"]) == (3, 8) for o in out)
    unanswered = evaluator.text_examples(in_memory("super_glue_record", test=[{**ex, "answers": []}]), "test")
    assert [o["targets"] for o in unanswered] == ["<unk>"]
    assert formats.candidates("super_glue_record", out[0]) == ["Obama", "Pope"]


def test_record_jsonl_is_converted_like_tfds(tmp_path):
    start = RECORD_PASSAGE.index
    second = RECORD_PASSAGE.index("Obama", start("Obama") + 1)
    row = {"idx": 3, "source": "x", "passage": {"text": RECORD_PASSAGE, "entities": [
        {"start": start("Pope"), "end": start("Pope") + 3}, {"start": start("Obama"), "end": start("Obama") + 4},
        {"start": second, "end": second + 4}]},
        "qas": [{"query": "q1", "idx": 7, "answers": [{"start": second, "end": second + 4, "text": "Obama"},
                                                      {"start": start("Obama"), "end": start("Obama") + 4,
                                                       "text": "Obama"}]},
                {"query": "q2", "idx": 8}]}
    (tmp_path / "superglue/ReCoRD").mkdir(parents=True)
    (tmp_path / "superglue/ReCoRD/val.jsonl").write_text(json.dumps(row) + "\n")
    records = registry.get_task("super_glue_record").source.get("validation", tmp_path)
    assert records == [
        {"passage": RECORD_PASSAGE, "query": "q1", "entities": ["Obama", "Pope"], "answers": ["Obama"],
         "idx": {"passage": 3, "query": 7}},
        {"passage": RECORD_PASSAGE, "query": "q2", "entities": ["Obama", "Pope"], "answers": [],
         "idx": {"passage": 3, "query": 8}}]


def test_multirc_order_markup_and_grouping_keys():
    ex = {"paragraph": "<b>Sent 1: </b>Tom ran.<br><b>Sent 2: </b>He won.<br>", "question": "Who ran?",
          "answer": "Tom", "label": 1, "idx": {"paragraph": 0, "question": 5, "answer": 2}}
    out = evaluator.text_examples(in_memory("super_glue_multirc", validation=[ex]), "validation")[0]
    assert out["inputs"] == "multirc question: Who ran? answer: Tom paragraph: Sent 1: Tom ran. Sent 2: He won. "
    assert out["targets"] == "True"
    assert (out["idx/paragraph"], out["idx/question"], out["idx/answer"]) == (0, 5, 2)


def test_copa_label_words_and_axb_cast_as_rte():
    copa = {"premise": "P.", "choice1": "A.", "choice2": "B.", "question": "cause", "label": 0, "idx": 1}
    out = evaluator.text_examples(in_memory("super_glue_copa", validation=[copa]), "validation")[0]
    assert (out["inputs"], out["targets"]) == ("copa choice1: A. choice2: B. premise: P. question: cause", "choice1")
    axb = {"sentence1": "S1.", "sentence2": "S2.", "label": 0, "idx": 4}
    out = evaluator.text_examples(in_memory("super_glue_axb", test=[axb]), "test")[0]
    assert (out["inputs"], out["targets"], out["idx"]) == ("rte hypothesis: S2. premise: S1.", "entailment", 4)


def test_wsc_marks_the_pronoun_and_train_keeps_correct_referents():
    def wsc(label, referent, idx):
        return {"text": "Mitchell asked Tom if he could lend some money.", "span1_index": 2, "span2_index": 4,
                "span1_text": referent, "span2_text": "he", "label": label, "idx": idx}
    task = in_memory("super_glue_wsc", train=[wsc(1, "Tom", 0), wsc(0, "Mitchell", 1)],
                     validation=[wsc(1, "Tom", 0), wsc(0, "Mitchell", 1)])
    train = evaluator.text_examples(task, "train")
    validation = evaluator.text_examples(task, "validation")
    inputs = "wsc: Mitchell asked Tom if *he* could lend some money."
    assert [(e["inputs"], e["targets"], e["label"]) for e in train] == [(inputs, "Tom", 1)]
    assert [(e["targets"], e["label"]) for e in validation] == [("Tom", 1), ("Mitchell", 0)]
    assert formats.candidates("super_glue_wsc", validation[0]) is None  # decoded, not ranked


def test_wsc_pronoun_mismatch_is_an_error():
    bad = {"text": "A B C", "span1_index": 0, "span2_index": 1, "span1_text": "A", "span2_text": "C",
           "label": 1, "idx": 9}
    with pytest.raises(ValueError, match="WSC idx 9: word 1 is 'B', not span2_text 'C'"):
        evaluator.text_examples(in_memory("super_glue_wsc", validation=[bad]), "validation")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "superglue/CB").mkdir(parents=True)
    (tmp_path / "superglue/CB/val.jsonl").write_text(
        '{"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}\n'
        '{"premise": "p", "label": "neutral", "idx": 1}\n')
    with pytest.raises(ValueError, match=r"CB/val.jsonl:2: missing key 'hypothesis'"):
        registry.get_task("super_glue_cb").source.get("validation", tmp_path)


def test_missing_split_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"superglue/ReCoRD/val.jsonl.*super_glue/record"):
        registry.get_task("super_glue_record").get_dataset("validation", data_dir=tmp_path)


# ------------------------------------------------------------------ real data
def test_every_superglue_validation_example_is_read(data_dir):
    for (name, split), count in VALIDATION_COUNTS.items():
        assert len(real_examples(name, split, data_dir)) == count, (name, split)
    multirc = real_examples("super_glue_multirc", "validation", data_dir)
    assert len({ex["idx/question"] for ex in multirc}) == 953


@pytest.mark.parametrize("name,split,index,inputs,targets", [
    ("super_glue_cb", "validation", 0, "cb hypothesis: Valence was helping premise: Valence the void-brain, "
     "Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? "
     "Did he think he was helping?", "contradiction"),
    ("super_glue_copa", "validation", 0, "copa choice1: The toilet filled with water. choice2: Water flowed "
     "from the spout. premise: The man turned on the faucet. question: effect", "choice2"),
    ("super_glue_wic", "validation", 0, "wic sentence1: An emerging professional class. sentence2: "
     "Apologizing for losing your temper, even though you were badly provoked, showed real class. word: "
     "class", "False"),
    ("super_glue_rte", "validation", 0, "rte hypothesis: Christopher Reeve had an accident. premise: Dana "
     "Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, according to the "
     "Christopher Reeve Foundation.", "not_entailment"),
    ("super_glue_wsc", "validation", 4, "wsc: Since Chester was dependent on Uncle Vernon , he couldn't very "
     "well marry without *his* approval", "Chester"),
    # wsc.fixed: span1_text "The table" is lower-cased to match the text.
    ("super_glue_wsc", "validation", 5, "wsc: The large ball crashed right through the table because *it* was "
     "made of styrofoam.", "the table"),
    ("super_glue_axb", "test", 0, "rte hypothesis: The cat did not sit on the mat. premise: The cat sat on "
     "the mat.", "not_entailment"),
    ("super_glue_axg", "test", 0, "rte hypothesis: The accountant sought help filing taxes. premise: The "
     "taxpayer met with the accountant to get help filing his taxes.", "not_entailment"),
])
def test_real_examples_in_t5_format(data_dir, name, split, index, inputs, targets):
    ex = real_examples(name, split, data_dir)[index]
    assert (ex["inputs"], ex["targets"]) == (inputs, targets)


def test_long_passages_are_kept_whole(data_dir):
    boolq, multirc = first_json(data_dir, "BoolQ/val.jsonl"), first_json(data_dir, "MultiRC/val.jsonl")
    ex = real_examples("super_glue_boolq", "validation", data_dir)[0]
    assert ex["inputs"] == f"boolq passage: {boolq['passage']} question: {boolq['question']}"
    assert ex["targets"] == "False"
    ex = real_examples("super_glue_multirc", "validation", data_dir)[0]
    assert ex["inputs"] == ("multirc question: Would the mass of a baseball affect how much force you have to "
                            f"use to pick it up? answer: No paragraph: {multirc['passage']['text']}")


def test_wsc_special_case_and_correct_referents_only_in_train(data_dir):
    train = real_examples("super_glue_wsc", "train", data_dir)
    assert len(train) == 259 and all(ex["label"] == 1 for ex in train)
    # span2_index points at the first "him"; T5 marks the second (its hard-coded case).
    special = [(ex["inputs"], ex["targets"]) for ex in train if "Good for" in ex["inputs"]]
    assert special == [('wsc: The boy continued to whip the pony , and eventually the pony threw him over. '
                        'John laughed out quite loud. "Good for *him* ," he said.', "pony")]


def test_targets_scored_as_predictions_give_100(data_dir):
    for (name, split) in VALIDATION_COUNTS:
        task = registry.get_task(name)
        examples = real_examples(name, split, data_dir)
        targets = [ex["targets_pretokenized"] for ex in examples]
        metrics = evaluator.evaluate_task(task, split, examples=examples, predictions=targets).metrics
        assert sorted(metrics) == METRIC_NAMES.get(name, ["accuracy"]), name
        if name == "super_glue_wsc":
            # The target is the candidate referent, right only when label is 1: predicting it
            # scores the share of true labels; naming another noun when label is 0 scores 100.
            share = 100 * sum(ex["label"] for ex in examples) / len(examples)
            assert metrics["accuracy"] == pytest.approx(share)
            oracle = [ex["targets_pretokenized"] if ex["label"] else "nobody" for ex in examples]
            metrics = evaluator.evaluate_task(task, split, examples=examples, predictions=oracle).metrics
        for metric, value in metrics.items():
            assert value == pytest.approx(100.0, abs=1e-9), (name, metric)
