"""The Grain loader: seeded batches, sharding, eval passes, iterator state save/restore."""
import itertools
import json

import numpy as np
import pytest

from t2t import batch_spec
from t2t.data import pipeline, registry
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

LENGTHS = {"inputs": 64, "targets": 14}  # random_spans_helper(64) == (70, 14)


def _take(iterator, n):
    return [{k: np.asarray(v) for k, v in b.items()} for b in itertools.islice(iterator, n)]


def _same(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def _builtin(seed=0, pack=True, **kwargs):
    kwargs = {"shard": (0, 1), "global_batch_size": 4, **kwargs}
    return pipeline.get_dataset("builtin_span_corruption", "train", sequence_length=LENGTHS,
                                pack=pack, seed=seed, **kwargs)


def _assert_restores(ds, skip=3, n=3, through_json=True):
    """Saving the state after `skip` batches and restoring it in a fresh iterator gives the same next batches."""
    it = iter(ds)
    _take(it, skip)
    state = it.get_state()
    if through_json:
        state = json.loads(json.dumps(state))
    expected = _take(it, n)
    if hasattr(it, "close"):
        it.close()
    restored = iter(ds)
    restored.set_state(state)
    got = _take(restored, n)
    if hasattr(restored, "close"):
        restored.close()
    assert _same(got, expected)


def test_builtin_batches_follow_the_contract(builtin_vocab):
    (batch,) = _take(iter(_builtin()), 1)
    packed = {f"{p}_{k}" for p in ("encoder", "decoder") for k in ("segment_ids", "positions")}
    assert set(batch) == set(batch_spec.get("enc_dec").key_names()) | packed
    assert batch["encoder_input_tokens"].shape == (4, 64) and batch["decoder_target_tokens"].shape == (4, 14)
    # Chunks are cut to the helper's raw length, so every encoder row is one full example.
    assert (batch["encoder_input_tokens"] != 0).all() and (batch["encoder_segment_ids"] == 1).all()
    assert (batch["decoder_target_tokens"][:, -1] == 1).all()
    sentinels = batch["encoder_input_tokens"][batch["encoder_input_tokens"] >= builtin_vocab.vocab_size - 100]
    assert sentinels.max() == builtin_vocab.vocab_size - 1


def test_same_seed_same_batches_other_seed_other_batches(builtin_vocab):
    first = _take(iter(_builtin(seed=1)), 3)
    assert _same(first, _take(iter(_builtin(seed=1)), 3))
    other = _take(iter(_builtin(seed=2)), 3)
    assert not np.array_equal(first[0]["encoder_input_tokens"], other[0]["encoder_input_tokens"])


@pytest.mark.parametrize("pack", [False, True])
def test_restoring_state_gives_the_exact_next_batch(builtin_vocab, pack):
    _assert_restores(_builtin(seed=3, pack=pack), through_json=False)
    _assert_restores(_builtin(seed=3, pack=pack), skip=0)
    _assert_restores(_builtin(seed=3, pack=pack), skip=5)


def test_restoring_state_with_worker_processes(builtin_vocab):
    """mp_prefetch (2 workers): the state, through JSON, resumes on the exact next batch."""
    _assert_restores(_builtin(seed=4, num_workers=2), skip=2, n=2)


def test_shards_differ_and_batch_must_divide(builtin_vocab):
    a = _take(iter(_builtin(shard=(0, 2))), 1)[0]
    b = _take(iter(_builtin(shard=(1, 2))), 1)[0]
    assert a["encoder_input_tokens"].shape == (2, 64)  # 4 rows over 2 processes
    assert not np.array_equal(a["encoder_input_tokens"], b["encoder_input_tokens"])
    with pytest.raises(ValueError, match="global batch size 5 is not divisible by the 2 data-loading processes"):
        _builtin(shard=(0, 2), global_batch_size=5)


def test_eval_pass_sees_every_example_once(builtin_vocab):
    task = registry.get_task("builtin_span_corruption")
    examples = list(task.get_dataset("validation", sequence_length=LENGTHS))
    batches = _take(iter(pipeline.get_dataset(
        "builtin_span_corruption", "validation", sequence_length=LENGTHS, global_batch_size=8,
        shuffle=False, num_epochs=1, drop_remainder=False, shard=(0, 1))), 10_000)
    rows = np.concatenate([b["encoder_input_tokens"] for b in batches])
    assert len(rows) == len(examples) > 8
    assert batches[-1]["encoder_input_tokens"].shape[0] == (len(examples) % 8 or 8)
    for row, ex in zip(rows, examples):
        assert row[:len(ex["inputs"])].tolist() == ex["inputs"].tolist()


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown task or mixture 'c4_span_corupt'; did you mean c4_span_corruption"):
        pipeline.get_dataset("c4_span_corupt", "train", sequence_length=LENGTHS, global_batch_size=2, shard=(0, 1))


def test_mixture_through_the_loader(builtin_vocab):
    if "builtin_denoise_mix" not in registry.MixtureRegistry:
        registry.add_mixture("builtin_denoise_mix", [("builtin_span_corruption", 3.0), ("builtin_iid_denoise", 1.0)])
    ds = pipeline.get_dataset("builtin_denoise_mix", "train", sequence_length={"inputs": 64, "targets": 64},
                              global_batch_size=4, shard=(0, 1), seed=5)
    (batch,) = _take(iter(ds), 1)
    assert batch["encoder_input_tokens"].shape == (4, 64) and set(batch) == set(batch_spec.get("enc_dec").key_names())
    _assert_restores(ds, skip=2, n=2)


def test_c4_span_corruption_batches(data_dir, t5_vocab_path):
    def c4(seed):
        return pipeline.get_dataset("c4_span_corruption", "train", sequence_length={"inputs": 512, "targets": 114},
                                    global_batch_size=8, pack=True, seed=seed, data_dir=data_dir,
                                    vocabulary=str(t5_vocab_path), shard=(0, 1))
    first = _take(iter(c4(0)), 2)
    assert first[0]["encoder_input_tokens"].shape == (8, 512) and first[0]["decoder_target_tokens"].shape == (8, 114)
    assert (first[0]["decoder_loss_weights"].sum(axis=1) == 114).all()  # full-length examples: 114 targets
    assert _same(first, _take(iter(c4(0)), 2))
    _assert_restores(c4(0), skip=2, n=2)
