"""Faults never lose work: a signal saves a checkpoint and exits cleanly, a kill -9 during a save leaves the previous
checkpoint usable, a failing save (disk full) is loud and never corrupts the last good checkpoint, and each
interrupted run resumes (`resume: auto`) from where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rel_helpers import LORA, log_steps, overrides, subprocess_env, tiny_config

from vistune.model.checkpoints.manifest import verify_manifest
from vistune.train.saving import checkpoint as ckpt

HERE = Path(__file__).parent


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited with {proc.returncode} before step {step}")
        if any(s["step"] >= step for s in log_steps(out)):
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no step {step} in {out / 'log.jsonl'} after {timeout}s")


def _assert_complete(path: Path, step: int) -> None:
    manifest = verify_manifest(path, hashes=True)  # every file present, sizes and sha256 match
    assert manifest["step"] == step
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "projector.safetensors",
                 "adapter/adapter_model.safetensors"):
        assert (path / name).is_file(), name
    assert json.loads((path / "trainer_state.json").read_text())["global_step"] == step


def _resume(config, capsys) -> tuple[object, str]:
    from vistune.train.stages.engine import train

    result = train(config)
    return result, capsys.readouterr().out


def _assert_contiguous(out: Path, last: int) -> None:
    assert [s["step"] for s in log_steps(out)] == list(range(1, last + 1))


@pytest.mark.parametrize("sig, workers, group", [(signal.SIGTERM, 0, False), (signal.SIGINT, 2, True)],
                         ids=["sigterm", "sigint-to-process-group-with-workers"])
def test_a_signal_saves_a_checkpoint_exits_cleanly_and_resume_continues(clean, tmp_path, capsys, sig, workers, group):
    """SIGTERM (a scheduler's preemption) to the trainer; SIGINT (Ctrl-C) to its whole process group, DataLoader
    workers included."""
    data, root = clean
    out = tmp_path / "run"
    extra = {"optim.max_steps": 30, "data.num_workers": workers}
    proc = subprocess.Popen([sys.executable, "-m", "vistune.cli", "train", str(LORA), *overrides(data, root, out, **extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(),
                            start_new_session=True)
    try:
        _wait_for_step(proc, out, 2)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        console, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, console[-3000:]  # 3 = interrupted with a checkpoint saved (0 = done)
    assert "Traceback" not in console
    saved = ckpt.latest_checkpoint(out)
    assert saved is not None, console[-3000:]
    step = ckpt.checkpoint_step(saved)
    assert 2 <= step < 30 and f"stopped by signal after step {step}; checkpoint {saved}" in console
    _assert_complete(saved, step)
    assert not (out / ckpt.STAGING).exists() or not any((out / ckpt.STAGING).iterdir())

    result, console = _resume(tiny_config(data, root, out, **extra), capsys)
    assert f"resuming from {saved}" in console
    assert result.status == "done" and result.global_step == 30
    _assert_contiguous(out, 30)


@pytest.mark.parametrize("point", ["file", "manifest", "rename"])
def test_kill_9_during_a_save_leaves_the_previous_checkpoint_usable(clean, tmp_path, capsys, point):
    data, root = clean
    out = tmp_path / "run"
    extra = {"optim.max_steps": 6, "save_steps": 2}
    proc = subprocess.run([sys.executable, str(HERE / "kill_harness.py"), point, "4", "train", str(LORA),
                           *overrides(data, root, out, **extra)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-2"
    _assert_complete(out / "checkpoint-2", 2)
    assert not ckpt.is_complete(out / "checkpoint-4")
    assert (out / ckpt.STAGING / "checkpoint-4").exists()  # the interrupted save, never visible as a checkpoint

    result, console = _resume(tiny_config(data, root, out, **extra), capsys)
    assert f"resuming from {out / 'checkpoint-2'}" in console
    assert result.status == "done" and result.global_step == 6
    assert not (out / ckpt.STAGING / "checkpoint-4").exists()
    _assert_complete(out / "checkpoint-6", 6)
    _assert_contiguous(out, 6)


def _fail_with_enospc(monkeypatch, target: str) -> None:
    """torch.save into `target` (the optimizer / scheduler / RNG state) fails the way a full disk does."""
    import errno

    import torch

    save = torch.save

    def full(obj, f, *a, **k):
        if isinstance(f, (str, os.PathLike)) and target in str(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)


def _assert_loud_failure_then_resume(err, out: Path, config, capsys) -> None:
    message = str(err.value)
    assert "saving checkpoint-4 failed" in message and "No space left on device" in message
    assert f"The last complete checkpoint {out / 'checkpoint-2'} is untouched" in message
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-2"
    _assert_complete(out / "checkpoint-2", 2)
    assert not (out / "checkpoint-4").exists() and not (out / ckpt.STAGING / "checkpoint-4").exists()
    result, console = _resume(config, capsys)
    assert f"resuming from {out / 'checkpoint-2'}" in console and result.global_step == 6
    _assert_contiguous(out, 6)


def test_a_failing_save_is_loud_and_keeps_the_last_good_checkpoint(clean, tmp_path, capsys, monkeypatch):
    """ENOSPC while writing checkpoint-4: the run stops naming the error and checkpoint-2."""
    from vistune.train.stages.engine import TrainingStopped, train

    data, root = clean
    out = tmp_path / "run"
    config = tiny_config(data, root, out, **{"optim.max_steps": 6, "save_steps": 2})
    with monkeypatch.context() as patch:
        _fail_with_enospc(patch, "checkpoint-4")
        with pytest.raises(TrainingStopped) as err:
            train(config)
    _assert_loud_failure_then_resume(err, out, config, capsys)


def test_the_cli_reports_a_failed_save_with_exit_1(clean, tmp_path, capsys, monkeypatch):
    from vistune.cli import main

    data, root = clean
    out = tmp_path / "run"
    _fail_with_enospc(monkeypatch, "checkpoint-2")
    assert main(["train", str(LORA), *overrides(data, root, out, **{"optim.max_steps": 2, "save_steps": 2})]) == 1
    err = capsys.readouterr().err
    assert "error: saving checkpoint-2 failed" in err and "No complete checkpoint exists yet" in err


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A real 16 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC seam test covers the logic")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_keeps_the_last_good_checkpoint(clean, small_tmpfs, capsys):
    """A run on a real filesystem that fills up between checkpoint-2 and checkpoint-4."""
    from vistune.train.stages.engine import TrainingStopped, train

    data, root = clean
    out = small_tmpfs / "run"
    first = tiny_config(data, root, out, **{"optim.max_steps": 2, "save_steps": 2})
    assert train(first).global_step == 2
    filler = small_tmpfs / "filler"
    stat = os.statvfs(small_tmpfs)
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 96 * 1024))  # ~96 KiB left: logs fit, weights don't
    config = tiny_config(data, root, out, **{"optim.max_steps": 6, "save_steps": 2})
    with pytest.raises(TrainingStopped) as err:
        train(config)
    capsys.readouterr()
    filler.unlink()
    _assert_loud_failure_then_resume(err, out, config, capsys)
