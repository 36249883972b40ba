"""A checkpoint zoo: tiny random weights in the exact file layouts of the checkpoints users bring.

Hidden sizes are scaled down; file names, shard indexes, config keys and values, tokenizer kinds, special-token ids,
vocabulary / embedding sizes and generation configs are the real ones. docs/checkpoints.md lists, per entry, the real
file it mirrors and the public copy each value was read from; in short:
- lmsys/vicuna-7b-v1.5: config.json LlamaForCausalLM (vocab 32000 scaled to 400, pad 0, float16), .bin shards + index,
  sentencepiece-only tokenizer; generation_config.json with temperature 0.9 / top_p 0.6 and NO do_sample (issue 25,
  LLaVA #1144, LLaMA-Factory #2545: transformers refuses to save it once changed).
- openai/clip-vit-large-patch14-336: its 2022 file forms: config.json with text_config_dict / vision_config_dict
  (taproot's CLIP safety-checker config keeps that layout), preprocessor_config.json with integer size / crop_size and
  feature_extractor_type CLIPFeatureExtractor (copied key for key in LLaVA-HR's and CAVE's vision towers).
- google/siglip-so400m-patch14-384: SiglipModel, model.safetensors, SiglipImageProcessor (mean / std 0.5).
- Qwen/Qwen2-7B-Instruct: Qwen2Config as printed from the hub repo (bos 151643, eos 151645, vocab 152064, rope 1e6,
  rms 1e-6, untied) in Retruth/deontic nlp_models/qwen2/README.md; specials <|endoftext|> <|im_start|> <|im_end|> at
  151643-151645 after 151643 text tokens (len 151646 < 152064 rows); generation config sampling with
  repetition_penalty 1.05 (a byte-for-byte fixture of Qwen2.5-7B-Instruct's, same as a LLaMA-Factory Qwen2 copy).
- meta-llama/Meta-Llama-3-8B-Instruct: tokenizer.json only, 128000 text tokens then the 256 specials of
  meta-llama/llama3 llama/tokenizer.py, clean_up_tokenization_spaces true, vocab 128256, 4 safetensors shards.
- mistralai/Mistral-7B-Instruct-v0.2: sentencepiece (legacy), [INST] chat template, 3 safetensors shards.
- liuhaotian/llava-v1.5-7b: LlavaLlamaForCausalLM config.json (mm_* keys), .bin shards holding the Vicuna weights,
  model.mm_projector.{0,2}.* AND model.vision_tower.vision_tower.vision_model.* (LLaVA's trainer saves the whole state
  dict); weight names from LLaVA's llava/model/llava_arch.py and multimodal_projector/builder.py.
- the stage-1 projector (liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5): config.json + mm_projector.bin.
- a LLaVA LoRA output dir (scripts/v1_5/finetune_lora.sh): adapter_config.json + adapter_model.bin +
  non_lora_trainables.bin, as llava/model/builder.py loads it.
- llava-hf/llava-1.5-7b-hf, llava-hf/llava-v1.6-mistral-7b-hf, llava-hf/llava-onevision-qwen2-7b-ov-hf: as
  transformers' models/llava{,_next,_onevision}/convert_*_weights_to_hf.py write them (tokens appended, embedding
  grown to vocab + added padded to 64, the classes' defaults, the scripts' chat templates / prompts).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

HIDDEN, LAYERS, HEADS, INTER = 64, 2, 4, 128
SERVED_HEAD_DIM = 64  # the llava-hf entries' LLM head size: vLLM's CPU attention has kernels for 64, none for 16
V_HIDDEN, V_LAYERS, V_HEADS, IMAGE, PATCH = 32, 3, 2, 28, 14

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAVA_HF_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _corpus() -> list[str]:
    from vistune.model.tiny.parts import _CORPUS_LINES

    return _CORPUS_LINES * 20


def sentencepiece_model(vocab_size: int = 400) -> bytes:
    """A Llama-style sentencepiece BPE model (byte fallback, <unk>=0 <s>=1 </s>=2), trained here in a second."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity",
        add_dummy_prefix=True, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        character_coverage=1.0, minloglevel=2,
    )
    return buf.getvalue()


def _json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def _bin_shards(state: dict, out: Path, n: int = 2) -> None:
    """pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json, as transformers 4.3x wrote them."""
    names = list(state)
    weight_map, total = {}, 0
    for i in range(n):
        shard = f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        part = {k: state[k].contiguous() for k in names[i::n]}
        torch.save(part, out / shard)
        weight_map.update(dict.fromkeys(part, shard))
        total += sum(t.numel() * t.element_size() for t in part.values())
    _json(out / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def _safetensors_shards(state: dict, out: Path, n: int) -> None:
    """model-0000i-of-0000n.safetensors + model.safetensors.index.json."""
    from safetensors.torch import save_file

    names = list(state)
    weight_map, total = {}, 0
    for i in range(n):
        shard = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: state[k].contiguous() for k in names[i::n]}
        save_file(part, str(out / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
        total += sum(t.numel() * t.element_size() for t in part.values())
    _json(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def _llm_state(model_type: str, vocab: int, seed: int, **extra) -> tuple[dict, dict]:
    """(config dict in the hub's key order, fp16 state dict) of a tiny causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTER,
                                  num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=512,
                                  tie_word_embeddings=False, **extra)
    model = AutoModelForCausalLM.from_config(config)
    state = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    return config, state


def vicuna(out: Path, legacy: bool = False) -> Path:
    """lmsys/vicuna-7b-v1.5: Llama-2, sentencepiece-only tokenizer, .bin shards with an index."""
    out.mkdir(parents=True)
    (out / "tokenizer.model").write_bytes(sentencepiece_model())
    _json(out / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "clean_up_tokenization_spaces": False,
        "eos_token": "</s>", "legacy": legacy, "model_max_length": 4096, "pad_token": None, "padding_side": "right",
        "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>"})
    _json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>",
                                            "unk_token": "<unk>"})
    _, state = _llm_state("llama", 400, seed=1)
    _json(out / "config.json", {
        "_name_or_path": "vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": HIDDEN, "initializer_range": 0.02,
        "intermediate_size": INTER, "max_position_embeddings": 512, "model_type": "llama",
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": HEADS, "pad_token_id": 0,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
        "torch_dtype": "float16", "transformers_version": "4.31.0", "use_cache": True, "vocab_size": 400})
    # lmsys/vicuna-7b-v1.5 generation_config.json: sampling flags WITHOUT do_sample (transformers 5 refuses to save
    # it once changed; LLaVA #1144, LLaMA-Factory #2545)
    _json(out / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
                                           "temperature": 0.9, "top_p": 0.6, "transformers_version": "4.31.0"})
    _bin_shards(state, out)
    return out


def clip(out: Path) -> Path:
    """openai/clip-vit-large-patch14-336: a full CLIPModel (text + vision), pytorch_model.bin only, in its 2022 file
    forms: config.json with `text_config_dict` / `vision_config_dict` beside the full sub-configs, and a
    preprocessor_config.json with integer `size` / `crop_size` and `feature_extractor_type: CLIPFeatureExtractor`
    (LLaVA-HR / CAVE copy this file's keys in their vision towers; transformers' CLIPConfig still reads *_dict)."""
    from transformers import CLIPConfig, CLIPModel

    out.mkdir(parents=True)
    torch.manual_seed(2)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 77, "projection_dim": 16}
    vision = {"hidden_size": V_HIDDEN, "intermediate_size": V_HIDDEN * 4, "num_hidden_layers": V_LAYERS,
              "num_attention_heads": V_HEADS, "image_size": IMAGE, "patch_size": PATCH, "projection_dim": 16,
              "hidden_act": "quick_gelu"}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.save(CLIPModel(config).state_dict(), out / "pytorch_model.bin")
    _json(out / "config.json", {
        "_name_or_path": "openai/clip-vit-large-patch14-336", "architectures": ["CLIPModel"],
        "initializer_factor": 1.0, "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": 16,
        "text_config": {**text, "model_type": "clip_text_model", "hidden_act": "quick_gelu", "bos_token_id": 0,
                        "eos_token_id": 2, "pad_token_id": 1, "layer_norm_eps": 1e-05},
        "text_config_dict": {k: text[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                  "num_hidden_layers", "projection_dim")},
        "torch_dtype": "float32", "transformers_version": None,
        "vision_config": {**vision, "model_type": "clip_vision_model", "num_channels": 3, "layer_norm_eps": 1e-05},
        "vision_config_dict": {k: vision[k] for k in ("hidden_size", "image_size", "intermediate_size",
                                                      "num_attention_heads", "num_hidden_layers", "patch_size",
                                                      "projection_dim")},
    })
    _json(out / "preprocessor_config.json", {
        "crop_size": IMAGE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": IMAGE})
    return out


def siglip(out: Path) -> Path:
    """google/siglip-so400m-patch14-384: a full SiglipModel, model.safetensors, SiglipImageProcessor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    out.mkdir(parents=True)
    torch.manual_seed(3)
    config = SiglipConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 100, "max_position_embeddings": 16},
        vision_config={"hidden_size": V_HIDDEN, "intermediate_size": V_HIDDEN * 4, "num_hidden_layers": V_LAYERS,
                       "num_attention_heads": V_HEADS, "image_size": IMAGE, "patch_size": PATCH},
    )
    SiglipModel(config).save_pretrained(out)
    SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE}).save_pretrained(out)
    return out


def _fast_tokenizer(specials: list[str], first_special: int, *, bos: str | None, eos: str, pad: str | None,
                    template: str, add_bos: bool, out: Path, clean_up: bool, config: dict) -> None:
    """A byte-level BPE tokenizer.json (Llama-3 / Qwen2 style) whose special tokens sit at their real ids.

    500 tokens are learned from the corpus; the rest of the real text vocabulary (up to `first_special`) is filled
    with tokens no merge reaches, so ids, `len(tokenizer)` and the embedding rows are the real ones. `config` holds
    the real tokenizer_config.json keys written over what transformers saves."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<|vistune_unreached_{i}|>": i for i in range(len(vocab), first_special)})
    spec["added_tokens"] = [{"id": first_special + i, "content": text, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True} for i, text in enumerate(specials)]
    tok = Tokenizer.from_str(json.dumps(spec))
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   model_max_length=8192, clean_up_tokenization_spaces=clean_up)
    fast.chat_template = template
    fast.save_pretrained(out)
    saved = json.loads((out / "tokenizer_config.json").read_text())
    _json(out / "tokenizer_config.json", {**saved, **config})


# the 256 special ids 128000-128255 as meta-llama/llama3's llama/tokenizer.py names them (reserved 0-3, the header
# pair, reserved 4, eot, then reserved 5-250), also in its ports' tokenizers
LLAMA3_SPECIALS = (["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
                   + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
                   + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])


def llama3(out: Path) -> Path:
    """meta-llama/Meta-Llama-3-8B-Instruct: tokenizer.json only, 128000 text tokens then 256 specials (bos 128000,
    eot 128009), clean_up_tokenization_spaces true, vocab 128256, chat template, 4 safetensors shards."""
    out.mkdir(parents=True)
    _fast_tokenizer(LLAMA3_SPECIALS, 128000, bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None,
                    template=LLAMA3_TEMPLATE, add_bos=True, out=out, clean_up=True,
                    config={"clean_up_tokenization_spaces": True, "model_max_length": 1000000000000000019884624838656,
                            "tokenizer_class": "PreTrainedTokenizerFast"})
    config, state = _llm_state("llama", 128256, seed=4, num_key_value_heads=2, rope_theta=500000.0,
                               bos_token_id=128000, eos_token_id=128009, rms_norm_eps=1e-05)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(out)
    # as quoted (with the eot 128009 Meta's first upload lacked) in catid's cat-llama-3 model-card notes
    _json(out / "generation_config.json", {"_from_model_config": True, "bos_token_id": 128000,
                                           "eos_token_id": [128001, 128009], "transformers_version": "4.40.0.dev0"})
    _safetensors_shards(state, out, 4)
    return out


def qwen2(out: Path) -> Path:
    """Qwen/Qwen2-7B-Instruct: 151643 text tokens, <|endoftext|> <|im_start|> <|im_end|> at 151643-151645, an
    embedding of 152064 rows (more than the tokenizer's 151646), ChatML with its default system prompt, no BOS,
    tokenizer.json + vocab.json/merges.txt, a sampling generation config with repetition_penalty 1.05, 4 shards."""
    out.mkdir(parents=True)
    _fast_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 151643, bos=None, eos="<|im_end|>",
                    pad="<|endoftext|>", template=QWEN2_TEMPLATE, add_bos=False, out=out, clean_up=False,
                    config={"additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
                            "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": 131072,
                            "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None})
    spec = json.loads((out / "tokenizer.json").read_text())["model"]  # the slow tokenizer's files too
    _json(out / "vocab.json", spec["vocab"])
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
        m if isinstance(m, str) else " ".join(m) for m in spec["merges"]) + "\n")
    config, state = _llm_state("qwen2", 152064, seed=5, num_key_value_heads=2, bos_token_id=151643,
                               eos_token_id=151645, rms_norm_eps=1e-06, rope_theta=1000000.0)
    config.architectures = ["Qwen2ForCausalLM"]
    config.save_pretrained(out)
    # Qwen2 / Qwen2.5-Instruct generation_config.json (copied byte for byte in a public fixture of real files)
    _json(out / "generation_config.json", {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                                           "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
                                           "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                           "transformers_version": "4.37.0"})
    _safetensors_shards(state, out, 4)
    return out


def mistral(out: Path) -> Path:
    """mistralai/Mistral-7B-Instruct-v0.2: sentencepiece tokenizer (legacy), [INST] template, 3 safetensors shards."""
    out.mkdir(parents=True)
    (out / "tokenizer.model").write_bytes(sentencepiece_model())
    _json(out / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "chat_template": MISTRAL_TEMPLATE,
        "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": True, "model_max_length": 32768,
        "pad_token": None, "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False})
    config, state = _llm_state("mistral", 400, seed=6, num_key_value_heads=2, sliding_window=None,
                               rope_theta=1000000.0, bos_token_id=1, eos_token_id=2)
    config.architectures = ["MistralForCausalLM"]
    config.save_pretrained(out)
    _safetensors_shards(state, out, 3)
    return out


def llava_config(vision_tower: str, projector: str = "mlp2x_gelu", **overrides) -> dict:
    """liuhaotian/llava-v1.5-7b's config.json keys, sizes scaled down."""
    return {
        "_name_or_path": "./checkpoints/vicuna-7b-v1-5", "architectures": ["LlavaLlamaForCausalLM"],
        "bos_token_id": 1, "eos_token_id": 2, "freeze_mm_mlp_adapter": False, "hidden_act": "silu",
        "hidden_size": HIDDEN, "image_aspect_ratio": "pad", "initializer_range": 0.02, "intermediate_size": INTER,
        "max_position_embeddings": 512, "mm_hidden_size": V_HIDDEN, "mm_projector_type": projector,
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": vision_tower, "model_type": "llava",
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": HEADS, "pad_token_id": 0,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
        "torch_dtype": "float16", "transformers_version": "4.31.0", "tune_mm_mlp_adapter": False,
        "tune_mm_vision_resampler": False, "unfreeze_mm_vision_tower": False, "use_cache": True, "use_mm_proj": True,
        "vocab_size": 400, **overrides,
    }


def projector_state(projector: str = "mlp2x_gelu", seed: int = 7, prefix: str = "model.mm_projector.") -> dict:
    torch.manual_seed(seed)
    if projector == "linear":
        lin = torch.nn.Linear(V_HIDDEN, HIDDEN)
        return {prefix + k: v.half() for k, v in lin.state_dict().items()}
    mlp = torch.nn.Sequential(torch.nn.Linear(V_HIDDEN, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN))
    return {prefix + k: v.half() for k, v in mlp.state_dict().items()}


def llava_v15(out: Path, vicuna_dir: Path, clip_dir: Path, *, projector: str = "mlp2x_gelu",
              with_vision: bool = True) -> Path:
    """liuhaotian/llava-v1.5-7b: Vicuna weights + model.mm_projector.* + model.vision_tower.vision_tower.* (LLaVA's
    trainer saves the whole state dict, tower included; `with_vision=False` is the projector-only variant)."""
    from vistune.model.checkpoints.weight_files import read_weights

    out.mkdir(parents=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        (out / name).write_bytes((vicuna_dir / name).read_bytes())
    _json(out / "config.json", llava_config("openai/clip-vit-large-patch14-336", projector))
    state = {k: v.clone() for k, v in read_weights(vicuna_dir, allow_pickle=True).items()}
    state.update(projector_state(projector))
    if with_vision:
        clip_state = torch.load(clip_dir / "pytorch_model.bin", weights_only=True)
        state.update({"model.vision_tower.vision_tower." + k: v.half() for k, v in clip_state.items()
                      if k.startswith("vision_model.")})
    _bin_shards(state, out)
    return out


def projector_bin(out: Path) -> Path:
    """The stage-1 release: config.json + mm_projector.bin."""
    out.mkdir(parents=True)
    _json(out / "config.json", llava_config("openai/clip-vit-large-patch14-336", tune_mm_mlp_adapter=True))
    torch.save(projector_state(seed=8), out / "mm_projector.bin")
    return out


def llava_lora(out: Path, vicuna_dir: Path, r: int = 4) -> Path:
    """A LLaVA LoRA output dir: config.json, adapter_config.json, adapter_model.bin, non_lora_trainables.bin."""
    from vistune.model.checkpoints.weight_files import read_weights

    out.mkdir(parents=True)
    _json(out / "config.json", llava_config("openai/clip-vit-large-patch14-336"))
    targets = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    _json(out / "adapter_config.json", {
        "base_model_name_or_path": "lmsys/vicuna-7b-v1.5", "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "lora_alpha": 2 * r, "lora_dropout": 0.05,
        "modules_to_save": None, "peft_type": "LORA", "r": r, "target_modules": targets, "task_type": "CAUSAL_LM"})
    base = read_weights(vicuna_dir, allow_pickle=True)
    torch.manual_seed(9)
    adapter = {}
    for name, weight in base.items():
        if name.startswith("model.layers.") and name.rsplit(".", 2)[-2] in targets:
            module = name.removesuffix(".weight")
            adapter[f"base_model.model.{module}.lora_A.weight"] = torch.randn(r, weight.shape[1]).half() * 0.1
            adapter[f"base_model.model.{module}.lora_B.weight"] = torch.randn(weight.shape[0], r).half() * 0.1
    torch.save(adapter, out / "adapter_model.bin")
    torch.save(projector_state(seed=10, prefix="base_model.model.model.mm_projector."), out / "non_lora_trainables.bin")
    return out


def llava_hf(out: Path, vicuna_dir: Path, clip_dir: Path) -> Path:
    """llava-hf/llava-1.5-7b-hf, as convert_llava_weights_to_hf.py writes it: <image> 32000-style id right after the
    text vocab, a `<pad>` after it, vocab padded to a multiple of 64, 3 safetensors shards, chat template."""
    from transformers import (
        AddedToken,
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(vicuna_dir)
    tokenizer.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    vocab = (len(tokenizer) + 63) // 64 * 64
    text = LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, num_key_value_heads=HEADS, head_dim=SERVED_HEAD_DIM,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig.from_pretrained(clip_dir)
    config = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=(IMAGE // PATCH) ** 2, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         pad_token_id=tokenizer.pad_token_id)
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(11)
    model = LlavaForConditionalGeneration(config).to(torch.float16)
    model.save_pretrained(out, max_shard_size="90KB")
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert shards, "expected a sharded checkpoint"
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor.from_pretrained(clip_dir), tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=LLAVA_HF_TEMPLATE)
    processor.save_pretrained(out)
    return out


LLAVA_NEXT_MISTRAL_TEMPLATE = (  # renders the conversion script's prompt "[INST] <image>\nWhat is shown ...? [/INST]"
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] "
    "+ '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}"
)
# transformers' models/llava_onevision/convert_llava_onevision_weights_to_hf.py `chat_template`, verbatim
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _grow_to(model, rows: int, seed: int) -> None:
    """resize_token_embeddings(vocab + added, pad_to_multiple_of=64) as the conversion scripts do (new rows random)."""
    torch.manual_seed(seed)
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(rows, mean_resizing=False)
    with torch.no_grad():
        for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
            emb.weight[old:] = emb.weight[:old].mean(0) + 0.02 * torch.randn_like(emb.weight[old:])


def llava_next_mistral(out: Path, mistral_dir: Path, clip_dir: Path) -> Path:
    """llava-hf/llava-v1.6-mistral-7b-hf, as transformers' models/llava_next/convert_llava_next_weights_to_hf.py
    writes it: Mistral's tokenizer + `<image>` (32000) + `<pad>` (32001), embedding grown to vocab + 2 padded to 64
    (32064), LlavaNextConfig defaults (feature layer -2, select 'default', gelu projector, image_newline parameter),
    CLIP's image processor with the 5 published grids (LlavaNextImageProcessor.from_pretrained(CLIP-336): size
    shortest_edge, crop_size square), 4 safetensors shards (file list in fuliucansheng/unitorch's llava infos)."""
    from transformers import (
        AddedToken,
        AutoConfig,
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    out.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(mistral_dir)
    base_vocab = len(tokenizer)
    tokenizer.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    clip_processor = CLIPImageProcessor.from_pretrained(clip_dir)
    s = IMAGE
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": s}, crop_size={"height": s, "width": s}, do_center_crop=True,
        image_mean=list(clip_processor.image_mean), image_std=list(clip_processor.image_std), resample=3,
        image_grid_pinpoints=[[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]])
    text = {**AutoConfig.from_pretrained(mistral_dir).to_dict(), "head_dim": SERVED_HEAD_DIM}  # served by vLLM
    config = LlavaNextConfig(text_config=text,
                             vision_config=CLIPVisionConfig.from_pretrained(clip_dir).to_dict(),
                             image_grid_pinpoints=image_processor.image_grid_pinpoints,
                             use_image_newline_parameter=True, image_token_index=base_vocab,
                             image_seq_length=(s // PATCH) ** 2)
    config.pad_token_id = base_vocab + 1
    torch.manual_seed(12)
    model = LlavaNextForConditionalGeneration(config)
    _grow_to(model, (base_vocab + 2 + 63) // 64 * 64, seed=13)
    model.to(torch.float16).save_pretrained(out, max_shard_size="120KB")  # 4 shards, as the hub repo
    LlavaNextProcessor(tokenizer=tokenizer, image_processor=image_processor, patch_size=PATCH,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                       chat_template=LLAVA_NEXT_MISTRAL_TEMPLATE).save_pretrained(out)
    return out


def llava_onevision_qwen2(out: Path, qwen2_dir: Path, siglip_dir: Path) -> Path:
    """llava-hf/llava-onevision-qwen2-7b-ov-hf, as transformers' models/llava_onevision/
    convert_llava_onevision_weights_to_hf.py writes it: Qwen2's tokenizer + `<image>` (151646) + `<video>` (151647),
    its 152064 rows grown to vocab + 2 padded to 64 (152128), SigLIP without its last layer and head, LlavaOnevision
    defaults (feature layer -1, select 'full', anyres_max_9, the 6 x 6 grid), num_image_tokens per crop, the
    script's chat template. Needs torchvision (transformers builds OneVision's video processor on it)."""
    from transformers import (
        AddedToken,
        AutoConfig,
        AutoTokenizer,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    from vistune.model.anyres import anyres_image_processor

    out.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(qwen2_dir)
    tokenizer.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tokenizer.add_tokens(AddedToken("<video>", special=True, normalized=False), special_tokens=True)
    vision = SiglipVisionConfig.from_pretrained(siglip_dir).to_dict()
    vision.update(num_hidden_layers=V_LAYERS - 1, vision_use_head=False)  # "drop the last layer", "no head"
    text = AutoConfig.from_pretrained(qwen2_dir)
    s = IMAGE
    config = LlavaOnevisionConfig(text_config=text.to_dict(), vision_config=vision, use_image_newline_parameter=True,
                                  image_grid_pinpoints=[[i * s, j * s] for i in range(1, 7) for j in range(1, 7)])
    torch.manual_seed(14)
    model = LlavaOnevisionForConditionalGeneration(config)
    _grow_to(model, (text.vocab_size + 2 + 63) // 64 * 64, seed=15)
    model.to(torch.float16).save_pretrained(out, max_shard_size="20MB")
    image_processor = anyres_image_processor("llava_onevision", SiglipImageProcessor.from_pretrained(siglip_dir), s,
                                             config.image_grid_pinpoints)
    video_processor = LlavaOnevisionVideoProcessor(size={"height": s, "width": s}, image_mean=[0.5] * 3,
                                                   image_std=[0.5] * 3)
    LlavaOnevisionProcessor(tokenizer=tokenizer, image_processor=image_processor, video_processor=video_processor,
                            num_image_tokens=(s // PATCH) ** 2, vision_feature_select_strategy="full",
                            chat_template=ONEVISION_TEMPLATE).save_pretrained(out)
    return out


class Zoo:
    """Builds each entry once under `root` (a session-wide temporary directory) and returns its path."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _get(self, name: str, build) -> Path:
        path = self.root / name
        if not path.exists():
            build(path)
        return path

    def vicuna(self, legacy: bool = False) -> Path:
        return self._get(f"vicuna-7b-v1.5{'-legacy' if legacy else ''}", lambda p: vicuna(p, legacy))

    def clip(self) -> Path:
        return self._get("clip-vit-large-patch14-336", clip)

    def siglip(self) -> Path:
        return self._get("siglip-so400m-patch14-384", siglip)

    def llama3(self) -> Path:
        return self._get("Meta-Llama-3-8B-Instruct", llama3)

    def qwen2(self) -> Path:
        return self._get("Qwen2-7B-Instruct", qwen2)

    def mistral(self) -> Path:
        return self._get("Mistral-7B-Instruct-v0.2", mistral)

    def llava_v15(self, projector: str = "mlp2x_gelu", with_vision: bool = True) -> Path:
        name = f"llava-v1.5-7b-{projector}{'-vision' if with_vision else ''}"
        return self._get(name, lambda p: llava_v15(p, self.vicuna(), self.clip(), projector=projector,
                                                   with_vision=with_vision))

    def projector_bin(self) -> Path:
        return self._get("llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5", projector_bin)

    def llava_lora(self) -> Path:
        return self._get("llava-v1.5-7b-lora", lambda p: llava_lora(p, self.vicuna()))

    def llava_hf(self) -> Path:
        return self._get("llava-1.5-7b-hf", lambda p: llava_hf(p, self.vicuna(), self.clip()))

    def llava_next_mistral(self) -> Path:
        return self._get("llava-v1.6-mistral-7b-hf", lambda p: llava_next_mistral(p, self.mistral(), self.clip()))

    def llava_onevision_qwen2(self) -> Path:
        return self._get("llava-onevision-qwen2-7b-ov-hf",
                         lambda p: llava_onevision_qwen2(p, self.qwen2(), self.siglip()))

    def llava_hf_bases(self) -> dict[str, Path]:
        """The llava-hf layouts (LLaVA-1.5, LLaVA-NeXT Mistral, and OneVision where torchvision is present), for
        serving checks (vLLM) to load as they are."""
        from vistune.model.anyres import has_torchvision

        entries = {"llava-1.5-7b-hf": self.llava_hf(), "llava-v1.6-mistral-7b-hf": self.llava_next_mistral()}
        if has_torchvision():
            entries["llava-onevision-qwen2-7b-ov-hf"] = self.llava_onevision_qwen2()
        return entries

    def llava_hf_exports(self, data: Path, records: str = "small.json") -> dict[str, dict[str, Path]]:
        """Each llava-hf base fine-tuned with LoRA for 2 steps on `data/records` (shapes data: images under `data`)
        and exported: {entry: {"merged": dir, "base+lora": dir}}, built once. For serving checks (vLLM)."""
        exports = {}
        for name, base in self.llava_hf_bases().items():
            out = self._get(f"exports/{name}", lambda p, base=base: export_from_base(base, data / records, p))
            exports[name] = {mode: out / mode for mode in ("merged", "base+lora")}
        return exports


def export_from_base(base: Path, records: Path, out: Path, method: str = "lora") -> Path:
    """`model.base` = `base`, 2 training steps on `records`, exported merged and base+lora under `out`."""
    from vistune.train.run.config import load_config
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    items = {"model.base": base, "model.dtype": "float32", "method": method, "data.path": records,
             "data.image_root": records.parent, "data.max_length": 400, "data.num_workers": 0, "lora.r": 4,
             "lora.alpha": 8, "optim.max_steps": 2, "optim.per_device_batch_size": 2,
             "optim.gradient_checkpointing": False, "optim.bf16": False, "optim.tf32": False,
             "output_dir": out / "run", "save_steps": 0, "seed": 0}
    train(load_config(None, [f"{k}={v}" for k, v in items.items()]))
    for mode in ("merged", "base+lora"):
        export(out / "run", out / mode, mode=mode, dtype="float32")
    return out
