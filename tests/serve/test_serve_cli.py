"""`vistune serve`: the real `vllm serve` on loopback answers a chat completion with an image as `vistune chat` does.

The bad-input checks (a run directory, a missing adapter, a rank above the server's limit) need no vLLM.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve.conftest import vistune_answers, vllm_env
from vistune.cli import main
from vistune.serve import ServeError, ServeSpec, vllm_args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, limit: float = 420) -> None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            pytest.fail(f"vistune serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    pytest.fail(f"vistune serve not ready after {limit:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_vistune_serve_answers_as_vistune_chat(serve_bin, vllm_exports, tmp_path):
    export, item = vllm_exports.base_lora, vllm_exports.items[0]
    port, log = _free_port(), tmp_path / "serve.log"
    env = {**vllm_env(), "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}  # the server runs its engine in a child process
    with open(log, "w") as out:
        proc = subprocess.Popen([str(serve_bin / "vistune"), "serve", str(export), "--port", str(port), "--",
                                 "--max-model-len", "1024", "--enforce-eager"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, port, log)
        image = base64.b64encode(Path(item["image"]).read_bytes()).decode()
        reply = _post(f"http://127.0.0.1:{port}/v1/chat/completions", {
            "model": "vistune", "max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                {"type": "text", "text": item["question"]}]}]})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    head = log.read_text().splitlines()
    assert str(export) in head[0] and "--enable-lora" in head[0] and "vllm" in head[0]
    assert head[2].startswith("curl ")
    answer = reply["choices"][0]["message"]["content"].strip()
    assert answer == vistune_answers(export, [item], export / "adapter")[0]


def _base_lora_export(tmp_path: Path, rank: int = 8) -> Path:
    export = tmp_path / "export"
    (export / "adapter").mkdir(parents=True)
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"")
    (export / "chat_template.jinja").write_text("{{ messages }}")
    (export / "base.json").write_text(json.dumps({"export_dtype": "bfloat16"}))
    (export / "adapter" / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 16}))
    return export


def test_serve_flags_come_from_the_export(tmp_path):
    export = _base_lora_export(tmp_path, rank=24)
    args = vllm_args(ServeSpec(export, port=8123, extra=["--max-model-len", "2048"]))
    flags = dict(zip(args[::2], args[1::2]))
    assert flags["--port"] == "8123" and flags["--dtype"] == "bfloat16"
    assert flags["--chat-template"] == str(export / "chat_template.jinja")
    assert "--enable-lora" in args and f"vistune={export / 'adapter'}" in args
    assert args[args.index("--max-lora-rank") + 1] == "32"  # the smallest rank vLLM accepts above 24
    assert args[-2:] == ["--max-model-len", "2048"]
    given = vllm_args(ServeSpec(export, extra=["--dtype", "float32"]))
    assert given.count("--dtype") == 1 and given[given.index("--dtype") + 1] == "float32"
    assert json.loads(args[args.index("--limit-mm-per-prompt") + 1]) == {"image": 1}


def test_a_onevision_export_is_served_without_videos(tmp_path):
    """vLLM profiles OneVision with a dummy video, whose `<video>` token vistune's tokenizers lack (it then fails
    with "Mismatch in `video` token count"); a video limit of 0 skips it."""
    export = _base_lora_export(tmp_path)
    (export / "config.json").write_text(json.dumps({"model_type": "llava_onevision"}))
    args = vllm_args(ServeSpec(export))
    assert json.loads(args[args.index("--limit-mm-per-prompt") + 1]) == {"image": 1, "video": 0}


@pytest.mark.parametrize("case, words", [
    ("run", ["training run, not an export", "vistune export --run"]),
    ("adapter", ["no adapter_config.json", "PEFT adapter directory"]),
    ("rank", ["rank 8, above the server's --max-lora-rank 1", "raise it to at least 8"]),
    ("vllm", ["vLLM is not installed", "setup_serve.sh"]),
])
def test_bad_input_is_one_line_naming_problem_and_fix(case, words, tmp_path, capsys):
    export = _base_lora_export(tmp_path)
    argv = {"run": ["serve", str(tmp_path / "run")],
            "adapter": ["serve", str(export), "--lora", f"x={tmp_path}"],
            "rank": ["serve", str(export), "--", "--max-lora-rank", "1"],
            "vllm": ["serve", str(export)]}[case]
    if case == "run":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.yaml").write_text("stage: instruct\n")
    if case == "vllm":
        try:
            import vllm  # noqa: F401
            pytest.skip("vLLM is installed in this environment")
        except ImportError:
            pass
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    with pytest.raises(ServeError):
        if case != "vllm":
            vllm_args(ServeSpec(Path(argv[1]), loras={"x": tmp_path} if case == "adapter" else {},
                                extra=argv[3:] if case == "rank" else []))
        else:
            from vistune.serve import vllm_launcher

            vllm_launcher(export)
