"""Task/Mixture registry: errors, preprocessors, sharding, seqio-style mixing rates."""
import collections
import json

import numpy as np
import pytest

from t2t.data import registry, sources
import t2t.tasks  # noqa: F401  (registers the built-in tasks)


@pytest.fixture
def fresh_tasks():
    """Registers throwaway tasks and removes them (and their mixtures) afterwards."""
    names = []

    def add(name, n, **kwargs):
        examples = [{"text": f"{name} {i}", "task": name, "i": i} for i in range(n)]
        names.append(name)
        return registry.add_task(name, sources.InMemorySource({"train": examples}), **kwargs)
    yield add
    for name in names:
        registry.TaskRegistry.remove(name)
        registry.MixtureRegistry.remove(name + "_mix")


def test_builtin_tasks_are_registered():
    registry.get_task("c4_span_corruption")  # imports t2t.tasks
    names = registry.TaskRegistry.names()
    for objective in ("span_corruption", "iid_denoise", "drop_tokens", "bert_t5", "bert_mlm", "mass",
                      "deshuffle", "prefix_lm", "causal_lm"):
        assert f"c4_{objective}" in names and f"builtin_{objective}" in names
    assert registry.get_task("c4_span_corruption").default_sequence_length == {"inputs": 512, "targets": 114}
    assert registry.get_task("c4_causal_lm").default_sequence_length == {"targets": 512}


def test_unknown_names_list_close_names():
    with pytest.raises(KeyError, match=r"unknown task 'c4_span_corruptoin'; did you mean c4_span_corruption"):
        registry.get_task("c4_span_corruptoin")
    with pytest.raises(KeyError, match=r"unknown task or mixture 'c4_prefixlm'; did you mean c4_prefix_lm"):
        registry.get_task_or_mixture("c4_prefixlm")
    with pytest.raises(KeyError, match=r"unknown mixture 'nothing_like_it' \(\d+ registered; the built-in ones "
                       r"register on `import t2t.tasks`\)"):
        registry.get_mixture("nothing_like_it")


def test_duplicate_registration_is_an_error(fresh_tasks):
    fresh_tasks("dup_task", 3)
    with pytest.raises(ValueError, match=r"task 'dup_task' is already registered; choose another name"):
        registry.add_task("dup_task", sources.InMemorySource({"train": [{"text": "x"}]}))
    with pytest.raises(ValueError, match="task 'c4_span_corruption' is already registered"):
        registry.add_task("c4_span_corruption", sources.InMemorySource({"train": [{"text": "x"}]}))
    registry.add_mixture("dup_task_mix", ["dup_task"], default_rate=1.0)
    with pytest.raises(ValueError, match="mixture 'dup_task_mix' is already registered"):
        registry.add_mixture("dup_task_mix", ["dup_task"], default_rate=1.0)
    with pytest.raises(KeyError, match="unknown task 'dup_tsak'; did you mean dup_task"):
        registry.add_mixture("other_mix", ["dup_tsak"], default_rate=1.0)


def test_empty_source_unknown_split_and_empty_shard(fresh_tasks):
    registry.add_task("empty_task", sources.InMemorySource({"train": []}))
    try:
        with pytest.raises(ValueError, match="task 'empty_task' split 'train': the source is empty"):
            registry.get_task("empty_task").get_dataset("train")
    finally:
        registry.TaskRegistry.remove("empty_task")
    task = fresh_tasks("three", 3)
    with pytest.raises(ValueError, match=r"task 'three' has no split 'validation'; it has \['train'\]"):
        task.get_dataset("validation")
    with pytest.raises(ValueError, match="task 'three' split 'train': shard 3 of 4 is empty"):
        task.get_dataset("train", shard=(3, 4))


def test_empty_jsonl_file_is_an_empty_source(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    task = registry.Task("empty_jsonl", sources.JsonlSource({"train": "empty.jsonl"}))
    with pytest.raises(ValueError, match="task 'empty_jsonl' split 'train': the source is empty"):
        task.get_dataset("train", data_dir=tmp_path)


def test_malformed_line_surfaces_through_the_task(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')
    task = registry.Task("bad_jsonl", sources.JsonlSource({"train": "x.jsonl"}))
    with pytest.raises(ValueError, match=rf"{tmp_path}/x.jsonl:2: malformed JSON line"):
        list(task.get_dataset("train", data_dir=tmp_path))


def test_shards_partition_and_shuffle_reorders_each_epoch(fresh_tasks):
    task = fresh_tasks("ten", 10)
    shards = [[ex["i"] for ex in task.get_dataset("train", shard=(k, 3))] for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    two_epochs = [ex["i"] for ex in task.get_dataset("train", shuffle=True, seed=5, num_epochs=2)]
    assert sorted(two_epochs[:10]) == sorted(two_epochs[10:]) == list(range(10))
    assert two_epochs[:10] != two_epochs[10:] and two_epochs[:10] != list(range(10))
    again = [ex["i"] for ex in task.get_dataset("train", shuffle=True, seed=5, num_epochs=2)]
    other = [ex["i"] for ex in task.get_dataset("train", shuffle=True, seed=6, num_epochs=2)]
    assert again == two_epochs and other != two_epochs


def test_tokenize_and_append_eos_after_trim(t5_vocab_path):
    from t2t.data.vocab import SentencePieceVocabulary
    vocab = SentencePieceVocabulary(t5_vocab_path)
    features = {"inputs": registry.Feature(vocab), "targets": registry.Feature(vocab, add_eos=False)}
    task = registry.Task("tok", sources.InMemorySource({"train": [{"question": "Hello world", "answer": "Hello"}]}),
                         [registry.rekey({"inputs": "question", "targets": "answer", "idx": None}),
                          registry.tokenize, registry.append_eos_after_trim], features)
    (ex,) = list(task.get_dataset("train"))
    assert ex["inputs"].tolist() == [8774, 296, 1] and ex["targets"].tolist() == [8774]
    assert (ex["inputs_pretokenized"], ex["targets_pretokenized"], ex["idx"]) == ("Hello world", "Hello", "")
    (short,) = list(task.get_dataset("train", sequence_length={"inputs": 2, "targets": 1}))
    assert short["inputs"].tolist() == [8774, 1]
    assert short["inputs"].dtype == np.int32


def test_rate_num_examples_matches_seqio_formula(fresh_tasks):
    small, big = fresh_tasks("small", 100), fresh_tasks("big", 5000)
    assert registry.rate_num_examples()(small, "train") == 100
    assert registry.rate_num_examples(maximum=2000)(big, "train") == 2000
    assert registry.rate_num_examples(maximum=2000, temperature=2.0)(big, "train") == pytest.approx(2000 ** 0.5)
    assert registry.rate_num_examples(scale=3.0, temperature=3.0)(small, "train") == pytest.approx(300 ** (1 / 3))


@pytest.mark.parametrize("maximum,temperature", [(2000, 1.0), (2000, 2.0)])
def test_mixture_gives_the_expected_empirical_mix(fresh_tasks, maximum, temperature):
    sizes = {"mix_a": 100, "mix_b": 1000, "mix_c": 5000}
    for name, n in sizes.items():
        fresh_tasks(name, n)
    rate = registry.rate_num_examples(maximum=maximum, temperature=temperature)
    mixture = registry.add_mixture("mix_a_mix", list(sizes), default_rate=rate)
    capped = {name: min(n, maximum) ** (1 / temperature) for name, n in sizes.items()}
    expected = {name: r / sum(capped.values()) for name, r in capped.items()}
    assert [(t.name, r) for t, r in mixture.task_rates("train")] == pytest.approx(list(capped.items()))
    it = iter(registry.get_mixture("mix_a_mix").get_dataset("train", seed=3))
    counts = collections.Counter(next(it)["task"] for _ in range(3000))
    for name, fraction in expected.items():
        assert counts[name] / 3000 == pytest.approx(fraction, abs=0.01), (name, counts)
    # The small task is repeated (epochs) rather than exhausted.
    state = it.get_state()
    following = [next(it)["text"] for _ in range(5)]
    restored = iter(mixture.get_dataset("train", seed=3))
    restored.set_state(json.loads(json.dumps(state)))
    assert [next(restored)["text"] for _ in range(5)] == following


def test_mixture_without_rate_is_an_error(fresh_tasks):
    fresh_tasks("norate", 2)
    mixture = registry.add_mixture("norate_mix", ["norate"])
    with pytest.raises(ValueError, match="mixture 'norate_mix': task 'norate' has no rate and no default_rate"):
        mixture.task_rates("train")
