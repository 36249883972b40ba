"""Two "nodes" on localhost: scripts/multinode/*.sh started twice (node ranks 0 and 1, master 127.0.0.1), one
CPU process each over gloo, run a tiny stage-2 LoRA job to completion as one world of two processes."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # ~30-60 s per launcher on 2 cores


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, tiny_parts):
    from vistune.data_prep import synthesize

    root = tmp_path_factory.mktemp("shapes")
    synthesize(root, n=24, seed=0)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_env(launcher: str, rank: int, port: int, hostfile: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "GLOBAL_BATCH": "2"}
    if launcher == "deepspeed":
        env.update(HOSTFILE=str(hostfile), NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    else:
        env.update(NUM_MACHINES="2", MACHINE_RANK=str(rank), MAIN_PROCESS_IP="127.0.0.1",
                   MAIN_PROCESS_PORT=str(port), GPUS_PER_NODE="1")
    return env


@pytest.mark.parametrize("launcher, zero", [("deepspeed", "zero2"), ("accelerate", "zero3")])
def test_two_nodes_on_localhost_train_to_completion(launcher, zero, shapes, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    out = tmp_path / "run"
    overrides = [f"data.path={shapes / 'instruct.json'}", f"data.image_root={shapes}", f"output_dir={out}",
                 "model.projector=null", "optim.max_steps=2", "save_steps=2", "optim.per_device_batch_size=1",
                 f"deepspeed={REPO / 'configs' / 'deepspeed' / f'{zero}.json'}"]
    cmd = [str(REPO / "scripts" / "multinode" / f"{launcher}.sh"), str(REPO / "configs" / "tiny" / "instruct_lora.yaml"),
           *overrides]
    port = _free_port()
    nodes = [subprocess.Popen(cmd, cwd=tmp_path, env=_node_env(launcher, rank, port, hostfile), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for rank in (0, 1)]
    try:
        logs = [node.communicate(timeout=480)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for rank, (node, log) in enumerate(zip(nodes, logs)):
        assert node.returncode == 0, f"node {rank}:\n{log[-4000:]}"

    records = len(json.loads((shapes / "instruct.json").read_text()))
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    # one world of two processes: an epoch is ceil(records / 2) steps of 1 sample per process
    assert steps[0]["epoch"] == pytest.approx(1 / math.ceil(records / 2), rel=1e-6)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "projector.safetensors").is_file()
    assert (out / "checkpoint-2" / "manifest.json").is_file()
