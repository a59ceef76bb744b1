"""Attention over a shared prompt for the n samples of each prompt (method §6): the prompt's keys and values are
kept and read once per prompt, not once per sample.

Sampling n completions of P prompts decodes P n rows. A plain key/value cache holds every prompt n times, and each
decoding step reads all P n copies: on CPU the tiny model's attention is bound by that memory traffic (a 146-token
prompt against completions of about 16 tokens). Here a step's attention for row (p, j) is one softmax over the
concatenation of prompt p's keys (stored once) and sample j's own generated keys:

    scores = [q K_p^T, q K_{p,j}^T] * scale (+ -inf at prompt p's left padding)
    out    = softmax(scores) [V_p; V_{p,j}]

which is exactly the attention a plain cache computes, in another memory layout. `SharedPrefixLayer` is one layer's
cache (`update` stores the new keys and hands the layer itself to the attention function), and
`shared_prefix_attention` is registered with transformers' `AttentionInterface` under ATTENTION. `supports` says
whether a model and its prompt cache can use it: models that select their attention through the interface and whose
layers are all full attention (a sliding window would need its own masking). vLLM's prefix caching does the same on
GPU. tests/test_prefix_attention.py checks it against torch's SDPA over a plain cache, and the backend against plain
`model.generate` (same samples, same seed; grouped-query attention included; tests/test_evaluate.py too).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer
from transformers.masking_utils import AttentionMaskInterface

from sapo_core.checks import check_int

__all__ = ["ATTENTION", "SharedPrefixLayer", "can_switch", "shared_prefix_attention", "shared_prefix_cache",
           "supports"]

ATTENTION = "sapo_shared_prefix"


class SharedPrefixLayer(CacheLayerMixin):
    """One layer's cache: the P prompts' keys and values (P, H_kv, L_p, D) once, with the additive (P, 1, 1, L_p)
    mask of their left padding, and room for `capacity` tokens of each of the P n samples (rows grouped by
    prompt: row p n + j is sample j of prompt p)."""

    is_compileable = False
    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, padding: torch.Tensor, n: int, capacity: int):
        super().__init__()
        self.prompt_keys, self.prompt_values, self.padding, self.n = keys, values, padding, n
        rows, heads = keys.shape[0] * n, keys.shape[1]
        self.keys = keys.new_empty(rows, heads, capacity, keys.shape[-1])
        self.values = values.new_empty(rows, heads, capacity, values.shape[-1])
        self.length = 0  # generated tokens stored per sample
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to do: the buffers are made in __init__."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Store the step's keys and values of every sample; returns the layer for `shared_prefix_attention`."""
        end = self.length + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            raise RuntimeError(f"shared-prefix cache full: {end} tokens per sample, room for {self.keys.shape[-2]}")
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        return self, self

    def get_seq_length(self) -> int:
        return self.prompt_keys.shape[-2] + self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return self.prompt_keys.shape[-2] + self.keys.shape[-2]


def _by_prompt(x: torch.Tensor, prompts: int, n: int, kv_heads: int) -> torch.Tensor:
    """(P n, H_q, q, X) -> (P, H_kv, n g q, X): each prompt's rows and query heads beside its key/value heads."""
    _, heads, q, last = x.shape
    g = heads // kv_heads
    return x.reshape(prompts, n, kv_heads, g, q, last).transpose(1, 2).reshape(prompts, kv_heads, n * g * q, last)


def _by_row(x: torch.Tensor, n: int, heads: int, q: int) -> torch.Tensor:
    """The inverse of `_by_prompt`: (P, H_kv, n g q, X) -> (P n, H_q, q, X)."""
    prompts, kv_heads, _, last = x.shape
    g = heads // kv_heads
    return x.reshape(prompts, kv_heads, n, g, q, last).transpose(1, 2).reshape(prompts * n, heads, q, last)


def shared_prefix_attention(module, query: torch.Tensor, key: SharedPrefixLayer, value: SharedPrefixLayer,
                            attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """Attention of (P n, H_q, q, D) queries over their prompt's keys and their own generated ones (the new q
    included, causally). Scores are softmaxed in float32, as transformers' eager attention does. Returns the
    (P n, q, H_q, D) output and no weights, as every attention function of the interface."""
    layer = key
    rows, heads, q, _ = query.shape
    prompts, kv_heads, prompt_length, _ = layer.prompt_keys.shape
    n, t = layer.n, layer.length
    # each key/value head serves its group of query heads: queries are regrouped, keys never copied
    prompt_scores = torch.matmul(_by_prompt(query, prompts, n, kv_heads), layer.prompt_keys.transpose(-1, -2))
    prompt_scores = _by_row(prompt_scores.mul_(scaling).add_(layer.padding), n, heads, q)  # (P n, H_q, q, L_p)
    own_keys, own_values = layer.keys[:, :, :t], layer.values[:, :, :t]
    own_scores = torch.matmul(_by_prompt(query, rows, 1, kv_heads), own_keys.transpose(-1, -2))
    own_scores = _by_row(own_scores.mul_(scaling), 1, heads, q)  # (P n, H_q, q, t)
    if q > 1:  # the new tokens see themselves and the ones before them
        own_scores = own_scores + own_scores.new_full((q, t), float("-inf")).triu(t - q + 1)
    weights = torch.softmax(torch.cat([prompt_scores, own_scores], -1), -1, dtype=torch.float32).to(query.dtype)
    prompt_part = torch.matmul(_by_prompt(weights[..., :prompt_length], prompts, n, kv_heads), layer.prompt_values)
    own_part = torch.matmul(_by_prompt(weights[..., prompt_length:], rows, 1, kv_heads), own_values)
    out = _by_row(prompt_part, n, heads, q) + _by_row(own_part, 1, heads, q)
    return out.transpose(1, 2).contiguous(), None


def can_switch(model) -> bool:
    """Whether `model` selects its attention through transformers' interface (so it can be switched to this one)."""
    check = getattr(model, "_can_set_attn_implementation", None)  # transformers 5's check (private)
    return callable(check) and check()


def supports(model, prompt_cache: Cache) -> bool:
    """Whether `model` can decode through `shared_prefix_attention` with the prompt cache it returned: it can switch
    its attention, and every layer is full attention (a sliding window would need its own masking)."""
    return can_switch(model) and all(type(layer) is DynamicLayer and not layer.is_sliding
                                     for layer in prompt_cache.layers)


def shared_prefix_cache(prompt_cache: Cache, prompt_mask: torch.Tensor, n: int, capacity: int) -> Cache:
    """A cache of `SharedPrefixLayer`s from the cache of a forward pass over the P prompts (left padded; `prompt_mask`
    (P, L_p) marks their tokens), with room for `capacity` tokens of each of their n samples."""
    check_int("n", n, minimum=1)
    check_int("capacity", capacity, minimum=1)
    layers = prompt_cache.layers
    shape = (layers[0].keys.shape[0], layers[0].keys.shape[-2])  # (prompts, prompt length)
    if tuple(prompt_mask.shape) != shape:
        raise ValueError(f"prompt_mask must be (prompts, prompt length) = {shape}, got {tuple(prompt_mask.shape)}")
    padding = torch.zeros(prompt_mask.shape, dtype=layers[0].keys.dtype, device=prompt_mask.device)
    padding = padding.masked_fill(prompt_mask == 0, float("-inf"))[:, None, None, :]
    return Cache(layers=[SharedPrefixLayer(layer.keys, layer.values, padding, n, capacity) for layer in layers])


AttentionInterface.register(ATTENTION, shared_prefix_attention)
AttentionMaskInterface.register(ATTENTION, lambda *args, **kwargs: None)  # the layer holds the only mask it needs
