"""Checkpointer: low-priority background writes keep the saved values, lower only writer threads;
uncompressed (default) and compressed checkpoints, old ones included, restore; saves stay atomic."""
import os
import signal
import subprocess
import sys
import threading
import time

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from t2t.workdir import checkpointer as ckpt_lib


def _state():
    """A few arrays, one sharded over all (simulated) CPU devices, like a small train state."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.device_put(jnp.arange(64 * 256, dtype=jnp.float32).reshape(64, 256),
                             NamedSharding(mesh, P("data", None)))
    return {"w": sharded, "b": jnp.full((1000,), 3.0), "step": jnp.array(7, jnp.int32),
            "layers": [jnp.ones((128, 128)) * i for i in range(8)]}


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])), tree)


def _folder_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
               for f in files)


def _assert_tree_equal(actual, expected) -> None:
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, actual),
                 jax.tree.map(np.asarray, expected))


def _nice_and_policy(tid: int) -> tuple[int, int]:
    return os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid)


@pytest.mark.parametrize("low_priority", [True, False])
def test_round_trip_while_donating_steps_run(tmp_path, low_priority):
    """Steps that donate the state while the save is in flight do not change what is saved;
    the iterator state and the config come back too, and the state restores onto a new layout."""
    state = _state()
    expected = jax.tree.map(np.array, state)
    data_iter = iter(grain.MapDataset.range(100).batch(2).to_iter_dataset())
    next(data_iter), next(data_iter)
    ck = ckpt_lib.Checkpointer(tmp_path, keep=2, low_priority_writes=low_priority)
    try:
        ck.save(5, state, data_iter, {"lr": 0.1})
        bump = jax.jit(lambda s: jax.tree.map(lambda x: x + 1, s), donate_argnums=0)
        for _ in range(5):  # the loop moves on, donating the state, during the async write
            state = bump(state)
        jax.block_until_ready(state)
        next(data_iter)
        ck.wait()
        assert ck.latest_step() == 5 and not ck.saving()
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[-1])),
            expected)
        fresh_iter = iter(grain.MapDataset.range(100).batch(2).to_iter_dataset())
        restored = ck.restore(5, abstract, fresh_iter)
        assert ck.restore_config(5) == {"lr": 0.1}
    finally:
        ck.close()
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), expected)
    np.testing.assert_array_equal(next(fresh_iter), [4, 5])


def _check_priorities(directory) -> None:
    """Saves once and checks that TensorStore's writer threads run at nice 19 while the main
    thread, XLA's and every other earlier thread keep their priority."""
    main_tid = threading.main_thread().native_id
    before = {tid: _nice_and_policy(tid) for tid in ckpt_lib._thread_comms()}
    ck = ckpt_lib.Checkpointer(directory, low_priority_writes=True)
    try:
        ck.save(1, _state())
        ck.wait()
        comms = ckpt_lib._thread_comms()
        writers = [tid for tid, comm in comms.items() if comm.startswith("ts_")]
        assert writers, f"no TensorStore threads among {sorted(set(comms.values()))}"
        for tid in writers:
            assert _nice_and_policy(tid)[0] == 19
        for tid, prio in before.items():
            if tid in comms:
                assert _nice_and_policy(tid) == prio, (tid, comms[tid])
        assert _nice_and_policy(main_tid) == before[main_tid]
    finally:
        ck.close()


@pytest.mark.skipif(not ckpt_lib.priorities_supported(), reason="needs per-thread priorities")
def test_writer_threads_get_low_priority_and_others_do_not(tmp_path):
    """In a fresh process, as a run uses it: TensorStore's thread pool is process-wide, and pool
    threads that an earlier normal-priority save started (e.g. another test in this worker)
    spawn new ones at their own priority."""
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_background_save_error_surfaces(tmp_path):
    """A failing background save call raises on the caller's next call, not silently."""
    ck = ckpt_lib.Checkpointer(tmp_path, low_priority_writes=True)
    try:
        ck.save(1, _state())
        ck.wait()
        ck.save(1, _state())  # the step exists: Orbax refuses
        if ck._worker is not None:
            with pytest.raises(RuntimeError, match="checkpoint save"):
                ck.wait()
    finally:
        ck.close()


def test_no_op_without_proc(monkeypatch, tmp_path):
    """Where per-thread priorities are missing the option is off and saves run as before."""
    monkeypatch.setattr(ckpt_lib, "priorities_supported", lambda: False)
    assert ckpt_lib.lower_writer_threads() == []
    ck = ckpt_lib.Checkpointer(tmp_path, low_priority_writes=True)
    try:
        assert not ck.low_priority_writes and ck._worker is None
        ck.save(1, {"x": jnp.ones(3)})
        ck.wait()
        assert ck.all_steps() == [1]
    finally:
        ck.close()


@pytest.mark.parametrize("compress", [False, True])
def test_compress_option(tmp_path, compress):
    """`compress` decides whether zstd shrinks the arrays on disk; a checkpoint restores under
    either setting (each array records its codec)."""
    state = {"ones": jnp.ones((512, 512)), **_state()}  # 1 MB that zstd shrinks to ~nothing
    ck = ckpt_lib.Checkpointer(tmp_path, compress=compress)
    try:
        assert ck.compress is compress
        ck.save(1, state)
        ck.wait()
    finally:
        ck.close()
    assert (_folder_bytes(tmp_path / "1" / "state") > 1_000_000) is not compress
    other = ckpt_lib.Checkpointer(tmp_path, compress=not compress)
    try:
        _assert_tree_equal(other.restore(1, _abstract(state)), state)
    finally:
        other.close()


def test_restores_checkpoints_in_the_earlier_format(tmp_path):
    """Checkpoints written before the `compress` option (StandardCheckpointHandler, zstd) restore,
    iterator state and config included, and new saves go on in the same folder."""
    state = {"ones": jnp.ones((512, 512)), **_state()}
    data_iter = iter(grain.MapDataset.range(100).batch(2).to_iter_dataset())
    next(data_iter)
    earlier = ocp.CheckpointManager(
        tmp_path, options=ocp.CheckpointManagerOptions(create=True),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler(),
                       "config": ocp.JsonCheckpointHandler()})
    earlier.save(3, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(ckpt_lib._IteratorSnapshot(data_iter)),
        config=ocp.args.JsonSave({"lr": 0.1})))
    earlier.wait_until_finished()
    earlier.close()
    assert _folder_bytes(tmp_path / "3" / "state") < 1_000_000  # compressed
    ck = ckpt_lib.Checkpointer(tmp_path)
    try:
        fresh_iter = iter(grain.MapDataset.range(100).batch(2).to_iter_dataset())
        restored = ck.restore(3, _abstract(state), fresh_iter)
        assert ck.restore_config(3) == {"lr": 0.1}
        np.testing.assert_array_equal(next(fresh_iter), [2, 3])
        _assert_tree_equal(restored, state)
        ck.save(4, restored)
        ck.wait()
        assert ck.all_steps() == [3, 4]
        _assert_tree_equal(ck.restore(4, _abstract(state)), state)
    finally:
        ck.close()


def _big_state():
    """64 MB, so that a write takes long enough to be killed halfway."""
    return {f"w{i}": jnp.full((1 << 20,), float(i)) for i in range(16)}


def _save_then_die_mid_write(directory) -> None:
    """Saves step 1, starts saving step 2 and kills this process once Orbax's temporary folder
    for it exists (the write under way)."""
    ck = ckpt_lib.Checkpointer(directory)
    ck.save(1, _big_state())
    ck.wait()
    ck.save(2, jax.tree.map(lambda x: x + 1, _big_state()))
    deadline = time.monotonic() + 120
    while not any(".orbax-checkpoint-tmp" in name for name in os.listdir(directory)):
        if time.monotonic() > deadline:
            sys.exit("no temporary folder appeared")
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_mid_write_resumes_from_last_complete_step(tmp_path):
    """A process killed while a step is being written leaves that step unlisted; the previous
    step restores intact and saving goes on."""
    proc = subprocess.run([sys.executable, __file__, "kill_mid_save", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert any(".orbax-checkpoint-tmp" in name for name in os.listdir(tmp_path))
    ck = ckpt_lib.Checkpointer(tmp_path)
    try:
        assert ck.all_steps() == [1] and ck.latest_step() == 1
        _assert_tree_equal(ck.restore(1, _abstract(_big_state())), _big_state())
        ck.save(2, {"x": jnp.ones(3)})
        ck.wait()
        assert ck.all_steps() == [1, 2]
    finally:
        ck.close()


if __name__ == "__main__":
    if sys.argv[1] == "kill_mid_save":
        _save_then_die_mid_write(sys.argv[2])
    else:
        _check_priorities(sys.argv[1])
