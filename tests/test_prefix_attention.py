"""The shared-prompt attention of the hf backend (sapo_core.prefix_attention) against torch's own attention over a
plain cache, and the backend with it against plain `model.generate` on models it supports and on one it does not."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import DynamicCache

from sapo_core import prefix_attention as PA
from sapo_core import tiny
from sapo_core.benchmarks import load_benchmark
from sapo_core.generation import HFGenerator


def _plain_attention(query, prompt_keys, prompt_values, prompt_mask, own_keys, own_values, n, scaling):
    """torch's SDPA over each row's full cache: its prompt's keys repeated for each sample, then its own keys."""
    heads, kv_heads = query.shape[1], prompt_keys.shape[1]
    keys = torch.cat([prompt_keys.repeat_interleave(n, 0), own_keys], 2).repeat_interleave(heads // kv_heads, 1)
    values = torch.cat([prompt_values.repeat_interleave(n, 0), own_values], 2).repeat_interleave(heads // kv_heads, 1)
    q, t = query.shape[2], own_keys.shape[2]
    causal = torch.ones(q, t, dtype=torch.bool).tril(t - q)
    allowed = torch.cat([prompt_mask.bool().repeat_interleave(n, 0)[:, None, None, :].expand(-1, 1, q, -1),
                         causal.expand(query.shape[0], 1, q, t)], -1)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=allowed, scale=scaling).transpose(1, 2)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("q", [1, 3])
def test_shared_prefix_attention_equals_attention_over_a_plain_cache(kv_heads, q):
    _check_against_sdpa(kv_heads, q, torch.float32, tolerance={"rtol": 1e-5, "atol": 1e-6})


def test_shared_prefix_attention_in_bfloat16():
    """The dtype of a GPU run: scores softmaxed in float32, the output in bfloat16 (bfloat16's rounding apart)."""
    _check_against_sdpa(2, 3, torch.bfloat16, tolerance={"rtol": 0.0, "atol": 3e-2})


def _check_against_sdpa(kv_heads, q, dtype, tolerance):
    gen = torch.Generator().manual_seed(kv_heads * 10 + q)
    prompts, n, heads, length, dim, generated = 3, 4, 4, 7, 8, 5
    keys, values = (torch.randn(prompts, kv_heads, length, dim, generator=gen).to(dtype) for _ in range(2))
    prompt_mask = torch.ones(prompts, length, dtype=torch.long)
    prompt_mask[1, :3] = 0  # left padding, as the backend pads
    prompt_mask[2, :6] = 0
    cache = DynamicCache()
    cache.update(keys, values, 0)
    shared = PA.shared_prefix_cache(cache, prompt_mask, n, capacity=generated + q)
    own = [torch.randn(prompts * n, kv_heads, generated + q, dim, generator=gen).to(dtype) for _ in range(2)]
    layer = shared.layers[0]
    layer.update(own[0][:, :, :generated], own[1][:, :, :generated])  # earlier steps
    layer.update(own[0][:, :, generated:], own[1][:, :, generated:])  # this step's q tokens
    query = torch.randn(prompts * n, heads, q, dim, generator=gen).to(dtype)
    out, weights = PA.shared_prefix_attention(None, query, layer, layer, None, scaling=dim ** -0.5)
    expected = _plain_attention(*(x.float() for x in (query, keys, values)), prompt_mask, own[0].float(),
                                own[1].float(), n, dim ** -0.5)
    assert weights is None and out.shape == (prompts * n, q, heads, dim) and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, **tolerance)
    assert layer.get_seq_length() == length + generated + q
    full = f"cache full: {generated + q + 1} tokens per sample, room for {generated + q}$"
    with pytest.raises(RuntimeError, match=full):
        layer.update(own[0][:, :, :1], own[1][:, :, :1])


def _random_model(**config):
    """A randomly initialised Qwen2 on the tiny model's tokenizer (seeded)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny.base_model_path())
    torch.manual_seed(0)
    defaults = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    return Qwen2ForCausalLM(Qwen2Config(**{**defaults, **config})).eval(), tokenizer


@pytest.mark.parametrize("config", [{}, {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 0}],
                         ids=["grouped-query", "sliding-window"])
def test_the_backend_samples_what_plain_generate_samples(config):
    """Grouped-query attention decodes through the shared prompt; a sliding-window model (which it does not support)
    decodes plainly. Either way the samples are plain generate's, and the model's attention setting is restored."""
    model, tokenizer = _random_model(**config)
    prompts = load_benchmark("synthetic", limit=6)["prompt"]
    with torch.inference_mode():
        cache = model(**tokenizer(["abc"], return_tensors="pt"), use_cache=True).cache
    assert PA.supports(model, cache) == (not config)
    before = model.config._attn_implementation
    kwargs = {"n": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 3, "progress": False}
    shared = HFGenerator(model, tokenizer, batch_size=9).generate(prompts, **kwargs)
    plain = HFGenerator(model, tokenizer, batch_size=9, share_prompt_cache=False).generate(prompts, **kwargs)
    assert shared == plain and model.config._attn_implementation == before
    assert len({c.text for row in shared for c in row}) > 10  # random weights at T = 1: the check can fail
