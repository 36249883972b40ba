"""Stage rl on the tiny model: TRL's GRPOTrainer from a stage-2 run (LoRA); the rollouts see vistune's prompt ids and
images; rewards, completion lengths and clip ratios reach log.jsonl; the reference is the start network with the
adapter disabled; the export loads without vistune; bad records and bad rewards are one error naming them, before
training starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.conftest import TINY, assert_export_logits, tiny_overrides
from vistune.model import load_trained
from vistune.train.run.config import ConfigError, load_config
from vistune.train.stages.engine import train

RL = {"optim.max_steps": 3, "save_steps": 2}


@pytest.fixture(scope="module")
def questions(shapes):
    from vistune.data_prep.synth.rl import synthesize_rl

    return synthesize_rl(shapes, n=16, n_heldout=4, seed=5)


def _config(shapes, out, instruct_run, data="rl.json", **extra):
    return load_config(TINY / "rl_lora.yaml", tiny_overrides(shapes, out, data, **{**RL, "rl.start": instruct_run,
                                                                                    **extra}))


@pytest.fixture(scope="module")
def lora_rl(shapes, questions, instruct_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("rl-lora")
    config = _config(shapes, out, instruct_run)
    return config, train(config)


def test_lora_rl_logs_rewards_per_function_and_rollout_metrics(lora_rl, instruct_run):
    config, result = lora_rl
    assert result.status == "done" and result.global_step == 3
    lines = [json.loads(line) for line in (result.output_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3]
    for key in ("loss", "reward", "reward_std", "rewards/exact/mean", "rewards/exact/std", "rewards/format/mean",
                "completions/mean_length", "completions/clipped_ratio", "clip_ratio/region_mean", "entropy"):
        assert all(key in e for e in lines), key
    for e in lines:  # the weighted sum of the two rewards (weights 1 and 0.1), each a 0 / 1 score
        assert e["reward"] == pytest.approx(e["rewards/exact/mean"] + 0.1 * e["rewards/format/mean"], abs=1e-5)
        assert 0 < e["completions/mean_length"] <= config.rl.max_completion_length
    base = json.loads((result.output_dir / "base.json").read_text())
    assert base["stage"] == "rl" and base["start"] == str(instruct_run.resolve()) and base["weights"] == "adapter"
    assert (result.output_dir / "checkpoint-2" / "manifest.json").is_file()


def assert_rollouts_are_eval_answers(config, start: Path, image_root: Path) -> None:
    """Runs `config` (one step, lr 0, near-greedy, the `record` reward) and checks its rollouts against `vistune
    eval`'s greedy answers from `start` to the same questions."""
    from tests.train import rl_rewards
    from vistune.eval import Generator
    from vistune.eval.generate import GenerationSettings
    from vistune.eval.items import EvalItem

    rl_rewards.SEEN.clear()
    train(config)
    call = rl_rewards.SEEN[-1]  # the probe before training is the first call; the rollout is the last
    assert len(call["completions"]) == 8 and len(set(call["ids"])) == 2  # 2 questions x 4 generations
    rows = {r["id"]: r for r in json.loads(Path(config.data.path).read_text())}
    model, processor, _ = load_trained(start, merge=True)
    generator = Generator(model, processor, config.template, image_root=image_root,
                          settings=GenerationSettings(max_new_tokens=config.rl.max_completion_length))
    items = [EvalItem(question_id=i, prompt=rows[i]["conversations"][0]["value"].replace("<image>\n", ""),
                      image=rows[i]["image"]) for i in call["ids"]]
    assert [c.strip() for c in call["completions"]] == generator.answer(items)
    assert call["prompts"] == [item.prompt for item in items]


GREEDY = {"optim.max_steps": 1, "save_steps": 0, "rl.temperature": 1e-3, "optim.lr": 0,
          "rl.rewards": "[tests.train.rl_rewards:record]", "rl.reward_weights": "[]"}


def test_rollouts_are_the_start_models_answers_to_vistunes_prompts(shapes, questions, instruct_run, tmp_path):
    """Near-greedy rollouts (temperature 1e-3) at step 1 are what `vistune eval` answers greedily with the start
    model: TRL generates from vistune's prompt ids and images (a wrong template, image or image-token count would
    change them), and the user reward gets the dataset's columns."""
    assert_rollouts_are_eval_answers(_config(shapes, tmp_path / "greedy", instruct_run, **GREEDY), instruct_run, shapes)


def test_llava_next_rollouts_tile_each_image_as_eval_does(shapes, questions, tmp_path):
    """A LLaVA-NeXT start: each prompt's image-token count comes from its image's size (wide images here, so the
    tiling differs from a square's), and the rollouts, with image_sizes, are `vistune eval`'s answers."""
    from PIL import Image

    wide = tmp_path / "wide"
    rows = json.loads((shapes / "rl.json").read_text())
    for row in rows:
        target = wide / row["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(shapes / row["image"]).convert("RGB").resize((96, 40)).save(target)
    (wide / "rl.json").write_text(json.dumps(rows))
    start = tmp_path / "next-instruct"
    anyres = {"model.arch": "llava_next", "data.max_length": 512}
    train(load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, start, **anyres, **{"model.projector": "null", "optim.max_steps": 2, "save_steps": 0})))
    config = load_config(TINY / "rl_lora.yaml", tiny_overrides(wide, tmp_path / "rl", "rl.json", **{
        **RL, **GREEDY, **anyres, "rl.start": start}))
    assert_rollouts_are_eval_answers(config, start, wide)
    result = train(load_config(TINY / "rl_lora.yaml", tiny_overrides(wide, tmp_path / "rl-train", "rl.json", **{
        **RL, **anyres, "rl.start": start, "save_steps": 0, "optim.max_steps": 2})))
    assert result.status == "done" and (tmp_path / "rl-train" / "adapter" / "adapter_model.safetensors").is_file()


def test_kl_reference_is_the_start_model_with_the_adapter_disabled(shapes, questions, instruct_run, tmp_path):
    """rl.beta > 0: step 1's KL to the reference is 0 (a fresh adapter is the identity, and the reference forward
    sees the same images as the policy's); once the adapter has learned, it is not."""
    config = _config(shapes, tmp_path / "kl", instruct_run, **{"rl.beta": 0.1, "optim.lr": 5e-2, "save_steps": 0,
                                                                "rl.rewards": "[tests.train.rl_rewards:length]",
                                                                "rl.reward_weights": "[]"})
    result = train(config)
    kl = [json.loads(line)["kl"] for line in (result.output_dir / "log.jsonl").read_text().splitlines()]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[2] > 1e-4


def _prompt_batch(config, model, processor, n: int = 4) -> dict:
    """n prompts of the rl data (left-padded) with their images, as a plain transformers batch."""
    from PIL import Image

    from vistune.data_prep.images.inputs import image_transform
    from vistune.train.stages.rl import build_dataset

    rows = build_dataset(config, processor).select(range(n))
    width = max(len(r["prompt_ids"]) for r in rows)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r["prompt_ids"]):] = torch.tensor(r["prompt_ids"])
        mask[i, width - len(r["prompt_ids"]):] = 1
    pixels = image_transform(processor, config.data.aspect).encode([Image.open(r["image_path"]).convert("RGB")
                                                                    for r in rows])["pixel_values"]
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


@pytest.mark.parametrize("mode", ["merged", "base+lora"])
def test_rl_exports_load_without_vistune(mode, lora_rl, tmp_path):
    from vistune.cli import main

    config, result = lora_rl
    model, processor, _ = load_trained(result.output_dir)
    batch = _prompt_batch(config, model, processor)
    with torch.no_grad():
        result.model.eval()
        expected = result.model(**batch).logits.float()
    out = tmp_path / "export"
    assert main(["export", "--run", str(result.output_dir), "--out", str(out), "--mode", mode, "--dtype",
                 "float32"]) == 0
    assert_export_logits(out, mode, batch, expected, tmp_path, atol=1e-4)


def test_a_record_without_an_answer_is_named_before_training(shapes, questions, instruct_run, tmp_path):
    rows = json.loads((shapes / "rl.json").read_text())
    rows[3]["conversations"] = rows[3]["conversations"][:1]  # the question, no reference answer
    (shapes / "rl_no_answer.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"rl_no_answer.json: record 'rl-3' .*no reference answer"):
        train(_config(shapes, tmp_path / "x", instruct_run, "rl_no_answer.json"))
    assert not (tmp_path / "x" / "log.jsonl").exists()


@pytest.mark.parametrize("reward, message", [
    ("tests.train.rl_rewards:broken", r"reward 'tests.train.rl_rewards:broken' raised KeyError"),
    ("tests.train.rl_rewards:short", r"reward 'tests.train.rl_rewards:short' returned 1 values for 2 completions"),
])
def test_a_bad_reward_function_is_named_before_training(reward, message, shapes, questions, instruct_run, tmp_path):
    from vistune.train.loop.rewards import RewardError

    with pytest.raises(RewardError, match=message):
        train(_config(shapes, tmp_path / "x", instruct_run, **{"rl.rewards": f"[{reward}]", "rl.reward_weights": "[]"}))
    assert not (tmp_path / "x" / "log.jsonl").exists()


def test_an_unknown_reward_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'exacct' is neither a built-in reward .* \(did you mean 'exact'\?\)"):
        load_config(TINY / "rl_lora.yaml", ["rl.rewards=[exacct, format]"])
    with pytest.raises(ConfigError, match="2 weights for 1 rewards"):
        load_config(TINY / "rl_lora.yaml", ["rl.rewards=[exact]", "rl.reward_weights=[1, 2]"])


def test_builtin_rewards_score_with_the_reference_normalisation():
    from vistune.train.loop.rewards import choice, exact, format_reward, number

    assert exact(["Red.", " red\nmore", "blue"], ["red", "red", "red"]) == [1.0, 1.0, 0.0]
    assert number(["3", "three shapes", "There are 2.", "none"], ["3", "3", "3", "3"]) == [1.0, 1.0, 0.0, 0.0]
    assert number(["3"], ["red"]) == [None]  # not a number question: not applicable
    assert choice(["B", "B. a cat", "The answer is C.", "A"], ["B", "B", "C", "maybe"]) == [1.0, 1.0, 1.0, None]
    assert format_reward()(["red", "a red circle shape", "red\nblue", ""]) == [1.0, 0.0, 0.0, 0.0]
    assert format_reward(r"[A-D]")(["B", "B.", " C "]) == [1.0, 0.0, 1.0]


def test_full_rl_without_a_reference_trains_the_llm(shapes, questions, instruct_run, tmp_path):
    out = tmp_path / "full"
    result = train(_config(shapes, out, instruct_run, **{"method": "full", "save_steps": 0, "optim.lr": 1e-3,
                                                         "rl.rewards": "[tests.train.rl_rewards:length]",
                                                         "rl.reward_weights": "[]"}))
    assert result.status == "done" and (out / "model.safetensors").is_file()
    assert json.loads((out / "base.json").read_text())["weights"] == "full"
    start, _, _ = load_trained(instruct_run, merge=True)
    trained, _, _ = load_trained(out)
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(trained.named_parameters())[name], dict(start.named_parameters())[name])
    assert all(torch.equal(a, b) for a, b in zip(trained.model.vision_tower.parameters(),
                                                 start.model.vision_tower.parameters(), strict=True))


def test_full_rl_with_a_kl_term_has_the_start_as_its_frozen_reference(shapes, questions, instruct_run, tmp_path):
    """method full, rl.beta > 0: TRL loads the reference from the start's copy in the hub layout (start-model/);
    the KL is 0 at step 1 and grows as the policy trains, while the copy keeps the start's weights."""
    from transformers import LlavaForConditionalGeneration

    out = tmp_path / "full-kl"
    result = train(_config(shapes, out, instruct_run, **{"method": "full", "rl.beta": 0.1, "save_steps": 0,
                                                         "optim.lr": 1e-3, "rl.rewards": "[tests.train.rl_rewards:length]",
                                                         "rl.reward_weights": "[]"}))
    kl = [json.loads(line)["kl"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert result.status == "done" and kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] > 1e-4
    start, _, _ = load_trained(instruct_run, merge=True)
    copy = LlavaForConditionalGeneration.from_pretrained(out / "start-model")
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(dict(copy.named_parameters())[name], dict(start.named_parameters())[name])
    assert not torch.equal(dict(load_trained(out)[0].named_parameters())[name], dict(start.named_parameters())[name])


def test_qlora_rl_from_an_export(shapes, questions, instruct_run, tmp_path):
    from vistune.train.saving.export import export

    start = export(instruct_run, tmp_path / "start", mode="merged", dtype="float32")
    out = tmp_path / "run"
    result = train(_config(shapes, out, instruct_run, **{"method": "qlora", "rl.start": start, "save_steps": 0,
                                                         "optim.max_steps": 2}))
    assert result.status == "done" and len((out / "log.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "base.json").read_text())["load_in_4bit"] is True


ONE_AS_TWO = {"optim.max_steps": 4, "save_steps": 0, "rl.beta": 0.1, "optim.lr": 2e-2,
              "rl.rewards": "[tests.train.rl_rewards:length, exact]", "rl.reward_weights": "[]"}


@pytest.fixture(scope="module")
def one_process_rl(shapes, questions, instruct_run, tmp_path_factory) -> Path:
    """Four rl steps at temperature 1 with a KL term, 8 completions (2 prompts) per step, in this process."""
    out = tmp_path_factory.mktemp("rl-one-process") / "run"
    train(_config(shapes, out, instruct_run, **ONE_AS_TWO))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_two_deepspeed_processes_train_as_one_process(zero, one_process_rl, shapes, instruct_run, tmp_path):
    """Two DeepSpeed processes (4 completions each) against one process (8) at equal global batch: each completion's
    random stream is seeded by its prompt and copy, not by its process, so both layouts draw the same completions,
    and every step logs the same loss, rewards, KL and gradient norm; the adapters they save are the same."""
    import subprocess

    from safetensors.torch import load_file

    from tests.train.conftest import REPO, subprocess_env

    out = tmp_path / zero
    cmd = ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "vistune.cli", "train",
           str(TINY / "rl_lora.yaml"), *tiny_overrides(shapes, out, "rl.json", **{
               **RL, **ONE_AS_TWO, "rl.start": instruct_run, "optim.per_device_batch_size": 4,
               "deepspeed": REPO / "configs" / "deepspeed" / f"{zero}.json"})]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    keys = ("loss", "reward", "reward_std", "kl", "grad_norm", "completions/mean_length")
    expected, got = (
        [{k: e[k] for k in keys} for e in map(json.loads, (o / "log.jsonl").read_text().splitlines())]
        for o in (one_process_rl, out))
    assert len(expected) == len(got) == 4
    assert len({e["reward"] for e in expected}) > 1 and any(e["loss"] != 0 for e in expected)  # the run moves
    for a, b in zip(expected, got):
        assert a == pytest.approx(b, abs=1e-4)
    one, two = (load_file(o / "adapter" / "adapter_model.safetensors") for o in (one_process_rl, out))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4)


def test_a_killed_rl_run_resumes_with_the_same_rollouts(shapes, questions, instruct_run, tmp_path):
    """kill -9 after checkpoint 2, then `resume: auto`: steps 3-4 draw the rollouts the uninterrupted run drew (the
    rollout seeds are the step's and the prompt's) and log the same loss, rewards and KL; the adapters match."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.train.conftest import subprocess_env

    run = {**RL, "optim.max_steps": 4, "save_steps": 2, "rl.beta": 0.1, "optim.lr": 2e-2, "rl.start": instruct_run,
           "rl.rewards": "[tests.train.rl_rewards:length, exact]", "rl.reward_weights": "[]"}
    reference, out = tmp_path / "reference", tmp_path / "killed"
    train(load_config(TINY / "rl_lora.yaml", tiny_overrides(shapes, reference, "rl.json", **run)))
    helper = Path(__file__).with_name("run_with_signal.py")
    proc = subprocess.run([sys.executable, str(helper), str(TINY / "rl_lora.yaml"), "2", "SIGKILL",
                           *tiny_overrides(shapes, out, "rl.json", **run)], env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    result = train(load_config(TINY / "rl_lora.yaml", tiny_overrides(shapes, out, "rl.json", **run)))
    assert result.status == "done" and result.global_step == 4
    keys = ("loss", "reward", "kl", "grad_norm", "completions/mean_length")
    expected, got = ({e["step"]: {k: e[k] for k in keys} for e in map(json.loads, (o / "log.jsonl").read_text()
                                                                      .splitlines())} for o in (reference, out))
    assert len({e["reward"] for e in expected.values()}) > 1
    for step in (3, 4):
        assert got[step] == pytest.approx(expected[step], abs=1e-4), step
    a, b = (load_file(o / "adapter" / "adapter_model.safetensors") for o in (reference, out))
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4)
