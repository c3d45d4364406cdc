"""Checkpointer: low-priority background writes keep the saved values, lower only writer threads."""
import os
import subprocess
import sys
import threading

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from t2t.train import checkpoint as ckpt_lib


def _state():
    """A few arrays, one sharded over all (simulated) CPU devices, like a small train state."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.device_put(jnp.arange(64 * 256, dtype=jnp.float32).reshape(64, 256),
                             NamedSharding(mesh, P("data", None)))
    return {"w": sharded, "b": jnp.full((1000,), 3.0), "step": jnp.array(7, jnp.int32),
            "layers": [jnp.ones((128, 128)) * i for i in range(8)]}


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


if __name__ == "__main__":
    _check_priorities(sys.argv[1])
