"""GLUE tasks: TFDS-shaped readers, T5's exact text formats, counts and metrics on real data."""
import dataclasses
import functools

import numpy as np
import pytest

from t2t.data import registry, sources
from t2t.tasks import formats, glue
from t2t.data.vocab import SentencePieceVocabulary
from t2t.eval import evaluator
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

GLUE_VALIDATION_COUNTS = {
    ("glue_cola", "validation"): 1043, ("glue_sst2", "validation"): 872, ("glue_mrpc", "validation"): 408,
    ("glue_stsb", "validation"): 1500, ("glue_mnli", "validation_matched"): 9815,
    ("glue_mnli", "validation_mismatched"): 9832, ("glue_qnli", "validation"): 5463,
    ("glue_rte", "validation"): 277, ("glue_wnli", "validation"): 71, ("glue_ax", "test"): 1104,
}

METRIC_NAMES = {"glue_cola": ["matthews_corrcoef"], "glue_mrpc": ["accuracy", "f1"],
                "glue_stsb": ["pearson_corrcoef", "spearman_corrcoef"], "glue_ax": []}


def in_memory(name, **splits):
    """The registered task reading TFDS-shaped examples from memory."""
    return dataclasses.replace(registry.get_task(name), source=sources.InMemorySource(splits))


@functools.lru_cache(maxsize=None)
def real_examples(name, split, data_dir):
    return evaluator.text_examples(registry.get_task(name), split, data_dir)


# ------------------------------------------------------------------ registry
def test_every_glue_task_is_registered_with_its_splits():
    for spec in glue.SPECS:
        task = registry.get_task(spec.task_name)
        assert task.splits == tuple(spec.files)
    assert registry.get_task("glue_mnli").splits == ("train", "validation_matched", "validation_mismatched")
    assert registry.get_task("glue_ax").splits == ("test",)
    assert registry.get_task("glue_rte").metric_fns and not registry.get_task("glue_ax").metric_fns


def test_glue_mixture_is_t5s_examples_proportional_without_wnli():
    mixture = registry.get_mixture("glue")
    names = [name for name, _ in mixture.tasks]
    assert "glue_wnli" not in names and "glue_ax" not in names and len(names) == 8
    assert dict(mixture.tasks)["glue_mnli"] == 392_702 and dict(mixture.tasks)["glue_cola"] == 8_551


def test_task_name_typo_suggests_the_right_name():
    with pytest.raises(KeyError, match="did you mean glue_rte"):
        registry.get_task("glue_rte2")


# ------------------------------------------------------------------ T5 formats (TFDS-shaped input)
def test_qqp_from_tfds_shaped_examples_matches_t5_docstring():
    task = in_memory("glue_qqp", validation=[
        {"question1": "Why do I easily get bored of my friends?",
         "question2": "Why do I get bored of friends so quickly?", "label": 1, "idx": 10},
        {"question1": "a", "question2": "b", "label": -1, "idx": 11}])
    first, unlabeled = evaluator.text_examples(task, "validation")
    assert first["inputs"] == ("qqp question1: Why do I easily get bored of my friends? "
                               "question2: Why do I get bored of friends so quickly?")
    assert first["targets"] == "duplicate" and first["idx"] == 10
    assert unlabeled["targets"] == "<unk>"


def test_mnli_keys_are_alphabetical_and_ax_is_cast_as_mnli():
    pair = {"premise": "P .", "hypothesis": "H ", "label": 2, "idx": 0}
    mnli = evaluator.text_examples(in_memory("glue_mnli", validation_matched=[pair]), "validation_matched")
    ax = evaluator.text_examples(in_memory("glue_ax", test=[{**pair, "label": -1}]), "test")
    assert mnli[0]["inputs"] == "mnli hypothesis: H  premise: P ."  # trailing space kept, as T5
    assert mnli[0]["targets"] == "contradiction"
    assert ax[0]["inputs"] == "mnli hypothesis: H  premise: P ." and ax[0]["targets"] == "<unk>"


@pytest.mark.parametrize("label,target", [
    (1.8, "1.8"), (5.0, "5.0"), (0.0, "0.0"), (3.85, "3.8"),
    (2.5, "2.4"), (1.5, "1.6"), (0.5, "0.4"),  # x5 lands on .5: rounds half to even (tf.round)
    (4.9, "4.8"),  # float32: 4.9f * 5 == 24.5f exactly -> 24 (float64 would give 5.0)
    (-1.0, "-1.0"),  # unlabeled test example
])
def test_stsb_targets_round_to_nearest_fifth_in_float32(label, target):
    ex = {"sentence1": "A plane is taking off.", "sentence2": "An air plane is taking off.",
          "label": label, "idx": 3}
    out = evaluator.text_examples(in_memory("glue_stsb", validation=[ex]), "validation")[0]
    assert out["targets"] == target
    assert out["inputs"] == "stsb sentence1: A plane is taking off. sentence2: An air plane is taking off."


def test_out_of_range_label_is_an_error():
    task = in_memory("glue_rte", validation=[{"sentence1": "a", "sentence2": "b", "label": 2, "idx": 0}])
    with pytest.raises(ValueError, match="label 2 outside"):
        evaluator.text_examples(task, "validation")


# ------------------------------------------------------------------ TSV readers
def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_tsv_is_read_by_header_names_in_any_order(tmp_path):
    _write(tmp_path / "glue/MNLI/dev_matched.tsv",
           "gold_label\tgenre\tsentence2\tindex\tsentence1\n"
           "neutral\tfiction\tEveryone likes it \t0\tThe rights are nice\n"
           "\tfiction\tno label\t1\tdropped as TFDS drops it\n"
           "contradiction\tgov\tH2\t2\tP2\n")
    task = registry.get_task("glue_mnli")
    records = task.source.get("validation_matched", tmp_path)
    assert records == [
        {"premise": "The rights are nice", "hypothesis": "Everyone likes it ", "idx": 0, "label": 1},
        {"premise": "P2", "hypothesis": "H2", "idx": 2, "label": 2}]


def test_mrpc_bom_header_and_integer_labels(tmp_path):
    _write(tmp_path / "glue/MRPC/dev.tsv",
           "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tS1 \"quoted\tS2\n")
    ex = evaluator.text_examples(registry.get_task("glue_mrpc"), "validation", tmp_path)
    assert ex[0]["inputs"] == 'mrpc sentence1: S1 "quoted sentence2: S2' and ex[0]["targets"] == "equivalent"


def test_bad_label_names_file_line_and_column(tmp_path):
    _write(tmp_path / "glue/RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
                                          "1\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match=r"RTE/dev.tsv:3: column 'label': 'maybe' is not one of"):
        registry.get_task("glue_rte").source.get("validation", tmp_path)


def test_missing_column_names_file_and_header(tmp_path):
    _write(tmp_path / "glue/RTE/dev.tsv", "index\tpremise\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"dev.tsv:2: no column 'sentence1'; the header has"):
        registry.get_task("glue_rte").source.get("validation", tmp_path)


def test_missing_split_file_names_the_file_and_the_tfds_fallback(tmp_path):
    _write(tmp_path / "glue/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(FileNotFoundError, match=r"glue/RTE/dev.tsv.*glue/rte"):
        registry.get_task("glue_rte").get_dataset("validation", data_dir=tmp_path)


def test_ax_reads_the_first_diagnostic_file_present(tmp_path):
    _write(tmp_path / "glue/AX/AX.tsv", "index\tsentence1\tsentence2\n0\tP\tH\n")
    assert registry.get_task("glue_ax").source.get("test", tmp_path) == [
        {"premise": "P", "hypothesis": "H", "idx": 0, "label": -1}]


# ------------------------------------------------------------------ real data
def test_every_glue_validation_example_is_read(data_dir):
    for (name, split), count in GLUE_VALIDATION_COUNTS.items():
        assert len(real_examples(name, split, data_dir)) == count, (name, split)


@pytest.mark.parametrize("name,split,index,inputs,targets", [
    ("glue_cola", "validation", 0, "cola sentence: The sailors rode the breeze clear of the rocks.", "acceptable"),
    ("glue_sst2", "validation", 0, "sst2 sentence: it 's a charming and often affecting journey . ", "positive"),
    ("glue_rte", "validation", 0, "rte sentence1: Dana Reeve, the widow of the actor Christopher Reeve, has "
     "died of lung cancer at age 44, according to the Christopher Reeve Foundation. sentence2: Christopher "
     "Reeve had an accident.", "not_entailment"),
    ("glue_mrpc", "validation", 0, "mrpc sentence1: He said the foodservice pie business doesn't fit the "
     "company's long-term growth strategy. sentence2: \"The foodservice pie business does not fit our "
     "long-term growth strategy.", "equivalent"),
    ("glue_stsb", "validation", 0, "stsb sentence1: A man with a hard hat is dancing. sentence2: A man "
     "wearing a hard hat is dancing.", "5.0"),
    ("glue_mnli", "validation_matched", 0, "mnli hypothesis: Everyone really likes the newest benefits  "
     "premise: The new rights are nice enough", "neutral"),
    ("glue_qnli", "validation", 0, "qnli question: What came into force after the new constitution was "
     "herald? sentence: As of that day, the new constitution heralding the Second Republic came into "
     "force.", "entailment"),
    ("glue_wnli", "validation", 0, "wnli sentence1: The drain is clogged with hair. It has to be cleaned. "
     "sentence2: The hair has to be cleaned.", "not_entailment"),
    ("glue_ax", "test", 0, "mnli hypothesis: The cat did not sit on the mat. premise: The cat sat on the "
     "mat.", "contradiction"),
])
def test_real_examples_in_t5_format(data_dir, name, split, index, inputs, targets):
    ex = real_examples(name, split, data_dir)[index]
    assert (ex["inputs"], ex["targets"]) == (inputs, targets)


def test_stsb_validation_targets_are_multiples_of_a_fifth(data_dir):
    targets = {ex["targets"] for ex in real_examples("glue_stsb", "validation", data_dir)}
    assert targets <= set(glue.STSB_CANDIDATES) and len(targets) == 26


def test_targets_scored_as_predictions_give_100(data_dir):
    for (name, split) in GLUE_VALIDATION_COUNTS:
        task = registry.get_task(name)
        examples = real_examples(name, split, data_dir)
        result = evaluator.evaluate_task(task, split, examples=examples,
                                         predictions=[ex["targets_pretokenized"] for ex in examples])
        assert sorted(result.metrics) == METRIC_NAMES.get(name, ["accuracy"]), name
        for metric, value in result.metrics.items():
            assert value == pytest.approx(100.0, abs=1e-9), (name, metric)


def test_tokenized_dataset_carries_ids_with_eos_and_pretokenized_text(data_dir, t5_vocab_path):
    vocab = SentencePieceVocabulary(t5_vocab_path)
    ds = registry.get_task("glue_rte").with_vocabulary(vocab).get_dataset("validation", data_dir=data_dir)
    ex = ds[0]
    assert ex["inputs"].dtype == np.int32 and ex["inputs"][-1] == 1
    assert ex["inputs"].tolist() == vocab.encode(ex["inputs_pretokenized"]) + [1]
    assert ex["inputs"][:7].tolist() == [3, 52, 17, 15, 7142, 536, 10]  # "rte sentence1:"
    assert ex["targets"].tolist() == [59, 834, 35, 5756, 297, 1]  # "not_entailment" + EOS
    assert formats.candidates("glue_rte", ex) == ["entailment", "not_entailment"]
