"""The embedded default model: a tiny Qwen2 causal LM with a character-level tokenizer, built offline.

1. **Tokenizer** — one token per character of ASCII (a byte-level BPE with no merges, so anything else
   falls back to one token per UTF-8 byte), special tokens `<|pad|>`, `<|end|>` (the eos; it closes
   every chat turn), `<|unk|>` and the role markers `<|system|>`, `<|user|>`, `<|assistant|>`, and the
   four layout tags of `sapo_core.prompts` as *ordinary* added tokens, so that
   `decode(skip_special_tokens=True)` (what TRL does to completions) keeps them.
2. **Model** — a randomly initialised float32 `Qwen2ForCausalLM` of a few hundred thousand parameters.
3. **Warm start** — supervised fine-tuning on the *train* split of `synthetic_arithmetic` only (prompt
   rendered by the chat template with the generation prompt, then `solution` + eos; loss on the
   completion tokens only), so no validation or test instance is ever seen (method §3.3), with a
   *measured* stop: every `probe_every` updates we sample (temperature 1, same seed each time) one
   completion for each prompt of a fixed probe set (other draws of the train split) and stop as soon as
   the share whose `<answer>` equals the gold reaches `target_pass_rate`. The target is deliberately
   modest (0.4, format already learned) so that RL has room. `build_info.json` records the greedy
   accuracy on each split (the test split's is the reported one).

Build (refuses to overwrite without --force)::

    python -m sapo_core.tiny build [--out DIR] [--seed N] [--force]

`base_model_path()` returns the committed checkpoint `data/tiny/`, building it first when missing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tqdm.auto import tqdm
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sapo_core.cli import ArgumentParser, fail
from sapo_core.data import SPLIT_FRACTIONS, SPLITS, SyntheticTask, synthetic_arithmetic
from sapo_core.prompts import TAGS
from sapo_core.rewards import extract_answer, format_reward
from sapo_core.rewards.answers import as_batch

__all__ = [
    "PAD_TOKEN", "EOS_TOKEN", "UNK_TOKEN", "ROLE_TOKENS", "CHAT_TEMPLATE", "DEFAULT_DIR",
    "TinyBuildConfig", "build_tokenizer", "build_model", "count_parameters",
    "generate_completions", "extract_answer", "pass_rate", "greedy_accuracy",
    "sft_set", "eval_set", "warm_start", "build", "base_model_path", "main",
]

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "tiny"
BUILD_INFO = "build_info.json"

PAD_TOKEN, EOS_TOKEN, UNK_TOKEN = "<|pad|>", "<|end|>", "<|unk|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}

# Compact rendering, every character is a token: `<|role|>content<|end|>` per message, then
# `<|assistant|>` for the generation prompt. `<|end|>` is the eos, so it closes the assistant turn.
# `{% generation %}` marks the assistant tokens for SFTTrainer's `assistant_only_loss`.
CHAT_TEMPLATE = """\
{%- for message in messages -%}
  {%- if message['role'] not in ['system', 'user', 'assistant'] -%}
    {{- raise_exception('unsupported role: ' + message['role']) -}}
  {%- endif -%}
  {{- '<|' + message['role'] + '|>' -}}
  {%- if message['role'] == 'assistant' -%}
    {%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}
  {%- else -%}
    {{- message['content'] + '<|end|>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|assistant|>' -}}
{%- endif -%}
"""



@dataclass(frozen=True)
class TinyBuildConfig:
    """Every setting of a tiny-model build; recorded in `build_info.json`."""

    seed: int = 0  # seed of the init, the training set and its order, and the probe sampling
    # --- model (Qwen2) ---
    hidden_size: int = 64  # width of the residual stream
    num_layers: int = 4  # decoder blocks
    num_heads: int = 4  # attention heads (head_dim = hidden_size / num_heads)
    num_kv_heads: int = 4  # key/value heads (GQA when < num_heads)
    intermediate_size: int = 256  # SwiGLU MLP width
    max_position_embeddings: int = 512  # longest sequence (prompt + completion) in tokens
    # --- task (data.SyntheticTask's defaults: the task is defined there, once) ---
    task_min_steps: int = SyntheticTask.min_steps  # fewest operations per problem
    task_max_steps: int = SyntheticTask.max_steps  # most operations per problem
    task_max_operand: int = SyntheticTask.max_operand  # largest operand (two-digit operands need >5x the updates)
    n_train: int = 50_000  # size of the training pool (cycled, reshuffled every epoch)
    # --- supervised warm start ---
    batch_size: int = 32  # sequences per update
    lr: float = 3e-3  # AdamW peak learning rate (constant after warmup)
    warmup_steps: int = 50  # linear warmup updates
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global grad norm
    # --- measured stop ---
    target_pass_rate: float = 0.4  # stop when the sampled pass rate on the probe set reaches this
    probe_every: int = 25  # updates between probes
    probe_size: int = 128  # prompts in the probe set (split="train", seed=probe_seed): how well SFT fits
    probe_seed: int = 1_000_003  # data seed of the probe set (other draws of the train split than `seed`'s)
    max_updates: int = 3000  # safety cap; reaching it without the target raises
    # --- final measurement ---
    eval_size: int = 200  # prompts per split (seed=eval_seed) for greedy accuracy; the test split's is reported
    eval_seed: int = 0  # data seed of the evaluation set
    max_new_tokens: int = 64  # generation budget for probes and evaluation

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":  # every count and seed: an int (not a bool), >= 0, and >= 1 unless it may be 0
                if not isinstance(value, int) or isinstance(value, bool):
                    raise TypeError(f"{f.name} must be an int, got {type(value).__name__} {value!r}")
                least = 0 if f.name in ("seed", "probe_seed", "eval_seed", "warmup_steps") else 1
                if value < least:
                    raise ValueError(f"{f.name} must be an int >= {least}, got {value!r}")
            elif not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if not 0.0 <= self.target_pass_rate <= 1.0:
            raise ValueError(f"target_pass_rate must lie in [0, 1], got {self.target_pass_rate!r}")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide hidden_size={self.hidden_size} and be a "
                             f"multiple of num_kv_heads={self.num_kv_heads}")
        if self.task_min_steps > self.task_max_steps:
            raise ValueError(f"task_min_steps={self.task_min_steps} must be <= task_max_steps={self.task_max_steps}")


# --------------------------------------------------------------------------------------- tokenizer


def build_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer with role/eos/pad specials and the layout tags as added tokens."""
    # One token per byte, spelled in the byte-level alphabet (space = "Ġ", newline = "Ċ"), so every
    # ASCII character is its own token and no input is ever unknown. A byte-level BPE *without merges*
    # is exactly the pipeline `AutoTokenizer` rebuilds for a qwen2 checkpoint (`Qwen2Tokenizer`:
    # the same vocab, no merges, plus a pre-split and NFC that cannot change a merge-free
    # tokenisation of ASCII), so the reloaded tokenizer encodes identically.
    specials = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, *ROLE_TOKENS.values()]
    vocab = {tok: i for i, tok in enumerate([*specials, *sorted(pre_tokenizers.ByteLevel.alphabet())])}
    backend = Tokenizer(models.BPE(vocab, [], unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS.values()),
        clean_up_tokenization_spaces=False,  # would turn "1 ." into "1."
        padding_side="left",  # decoder-only generation
        model_max_length=model_max_length,
    )
    # Ordinary (not special) tokens: TRL decodes completions with skip_special_tokens=True.
    tokenizer.add_tokens(list(TAGS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# ------------------------------------------------------------------------------------------- model


def build_model(cfg: TinyBuildConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """A freshly initialised float32 Qwen2 causal LM sized by `cfg` (seeded by `cfg.seed`)."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        use_cache=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=cfg.max_new_tokens)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------ sampling & checking


def _render(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[list[dict[str, str]]]) -> list[str]:
    """Chat-template texts of conversational prompts, ending in the generation prompt."""
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


@torch.no_grad()
def generate_completions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                         prompts: Sequence[list[dict[str, str]]], *, max_new_tokens: int = 64,
                         temperature: float = 1.0, seed: int = 0, batch_size: int = 64) -> list[str]:
    """One completion per conversational prompt (temperature 0 = greedy), decoded without specials."""
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and 0 <= temperature < math.inf):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be an int >= {0 if name == 'seed' else 1}, got {value!r}")
    if isinstance(prompts, (str, dict)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of conversational prompts (lists of chat messages), got "
                        f"{type(prompts).__name__}")
    was_training = model.training
    model.eval()
    texts = _render(tokenizer, prompts)
    out: list[str] = []
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 \
        else {"do_sample": False}
    # Own RNG stream: sampling neither depends on nor disturbs the caller's torch state.
    # fork_rng(devices=[]) would save only the CPU state while manual_seed also reseeds CUDA: fork the
    # model's accelerator too, or every later CUDA rollout would start from this seed whatever the run's seed
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            padding_side="left", add_special_tokens=False).to(model.device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
            out.extend(tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    model.train(was_training)
    return out


def pass_rate(completions: Sequence[str], answers: Sequence[str]) -> float:
    """Share of completions whose extracted answer equals the gold string (exact match after strip)."""
    completions, answers = as_batch(completions, "completions"), as_batch(answers, "answers")
    if len(completions) != len(answers) or not completions:
        raise ValueError(f"need as many completions as answers (> 0), got {len(completions)}, {len(answers)}")
    return sum(extract_answer(c) == str(a).strip() for c, a in zip(completions, answers)) / len(completions)


def greedy_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, dataset, *,
                    max_new_tokens: int = 64) -> dict:
    """Greedy accuracy (exact integer match) and format rate on a synthetic dataset's prompts."""
    completions = generate_completions(model, tokenizer, dataset["prompt"], max_new_tokens=max_new_tokens,
                                       temperature=0.0)
    return {"greedy_accuracy": pass_rate(completions, dataset["answer"]),
            "format_rate": sum(format_reward(completions)) / len(completions), "n": len(completions)}


# -------------------------------------------------------------------------------------- warm start


def _sft_batch(tokenizer: PreTrainedTokenizerFast, prompts, solutions) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and labels; labels only on `solution + eos`, -100 elsewhere."""
    prompt_ids = tokenizer(_render(tokenizer, prompts), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(list(solutions), add_special_tokens=False)["input_ids"]
    seqs = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompt_ids, completion_ids)]
    width = max(map(len, seqs))
    input_ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs)):
        input_ids[i, :len(s)] = torch.tensor(s)
        labels[i, len(p):len(s)] = input_ids[i, len(p):len(s)]
    # No attention_mask: with right padding, causal attention never lets a real token see a pad, so
    # the loss is unchanged and SDPA keeps its causal fast path.
    return {"input_ids": input_ids, "labels": labels}


def _task_kwargs(cfg: TinyBuildConfig) -> dict[str, int]:
    return {"min_steps": cfg.task_min_steps, "max_steps": cfg.task_max_steps, "max_operand": cfg.task_max_operand}


def sft_set(cfg: TinyBuildConfig):
    """The warm start's fine-tuning problems: `n_train` draws of the train split (method §3.3)."""
    return synthetic_arithmetic(cfg.n_train, seed=cfg.seed, split="train", **_task_kwargs(cfg))


def eval_set(cfg: TinyBuildConfig, split: str = "test"):
    """The build's measurement problems of one split: `eval_size` draws with `eval_seed`."""
    return synthetic_arithmetic(cfg.eval_size, seed=cfg.eval_seed, split=split, **_task_kwargs(cfg))


def warm_start(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, cfg: TinyBuildConfig, *,
               progress: bool = True) -> dict:
    """SFT until the sampled probe pass rate reaches `cfg.target_pass_rate`; returns the stop record."""
    train = sft_set(cfg)
    probe = synthetic_arithmetic(cfg.probe_size, seed=cfg.probe_seed, split="train", **_task_kwargs(cfg))
    prompts, solutions = train["prompt"], train["solution"]
    order_rng = torch.Generator().manual_seed(cfg.seed)  # deterministic data order, separate from init
    order: list[int] = []

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    model.train()
    history: list[dict] = []
    stop: dict | None = None
    bar = tqdm(total=cfg.max_updates, desc="warm start", disable=not progress, unit="upd")
    for step in range(1, cfg.max_updates + 1):
        while len(order) < cfg.batch_size:  # reshuffle the pool each epoch
            order.extend(torch.randperm(len(prompts), generator=order_rng).tolist())
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        batch = _sft_batch(tokenizer, [prompts[i] for i in idx], [solutions[i] for i in idx])
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        bar.update(1)
        if step % cfg.probe_every == 0:
            completions = generate_completions(model, tokenizer, probe["prompt"], max_new_tokens=cfg.max_new_tokens,
                                               temperature=1.0, seed=cfg.seed)
            rate = pass_rate(completions, probe["answer"])
            fmt = sum(format_reward(completions)) / len(completions)
            history.append({"step": step, "loss": round(loss.item(), 4), "sampled_pass_rate": rate,
                            "format_rate": fmt})
            bar.set_postfix(loss=f"{loss.item():.3f}", pass_rate=f"{rate:.2f}", fmt=f"{fmt:.2f}")
            logger.debug("step %d loss %.4f sampled pass rate %.3f format %.3f", step, loss.item(), rate, fmt)
            if rate >= cfg.target_pass_rate:
                stop = {"step": step, "sampled_pass_rate": rate, "format_rate": fmt, "loss": loss.item()}
                break
    bar.close()
    model.eval()
    if stop is None:
        raise RuntimeError(f"warm start never reached sampled pass rate {cfg.target_pass_rate} in "
                           f"{cfg.max_updates} updates (last probes: {history[-3:]})")
    logger.info("warm start stopped at update %d, sampled pass rate %.3f", stop["step"], stop["sampled_pass_rate"])
    return {**stop, "history": history}


# ------------------------------------------------------------------------------------------- build


def build(out: str | Path = DEFAULT_DIR, cfg: TinyBuildConfig | None = None, *, force: bool = False,
          progress: bool = True) -> Path:
    """Build tokenizer + model, warm-start it, measure it and save a checkpoint with `build_info.json`."""
    cfg = cfg or TinyBuildConfig()
    if not isinstance(cfg, TinyBuildConfig):
        raise TypeError(f"cfg must be a TinyBuildConfig, got {type(cfg).__name__}")
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise TypeError(f"out must be a directory path (non-empty str or os.PathLike), got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out {str(out)!r} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty; pass force=True (--force) to rebuild")
        shutil.rmtree(out)
    start = time.perf_counter()
    tokenizer = build_tokenizer(cfg.max_position_embeddings)
    model = build_model(cfg, tokenizer)
    stop = warm_start(model, tokenizer, cfg, progress=progress)
    train_seconds = time.perf_counter() - start

    by_split = {split: greedy_accuracy(model, tokenizer, eval_set(cfg, split), max_new_tokens=cfg.max_new_tokens)
                for split in SPLITS}
    greedy, held_out = by_split["test"], eval_set(cfg, "test")
    info = {
        "config": asdict(cfg),
        "n_parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "stop": {k: v for k, v in stop.items() if k != "history"},
        "greedy_accuracy": greedy["greedy_accuracy"],
        "greedy_format_rate": greedy["format_rate"],
        "greedy_accuracy_by_split": {split: m["greedy_accuracy"] for split, m in by_split.items()},
        "eval_set": f"synthetic_arithmetic({cfg.eval_size}, seed={cfg.eval_seed}, split='test', "
                    f"min_steps={cfg.task_min_steps}, max_steps={cfg.task_max_steps}, "
                    f"max_operand={cfg.task_max_operand})",
        "sft_set": f"synthetic_arithmetic({cfg.n_train}, seed={cfg.seed}, split='train', "
                   f"min_steps={cfg.task_min_steps}, max_steps={cfg.task_max_steps}, "
                   f"max_operand={cfg.task_max_operand})",
        "splits": {"instance": "a problem's arithmetic (method §3.3)", "fractions": SPLIT_FRACTIONS},
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "history": stop["history"],
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    _check_reload(out, tokenizer, [*held_out["prompt"][:8]])
    logger.info("saved tiny model to %s (greedy accuracy %.3f)", out, info["greedy_accuracy"])
    return out


def _check_reload(path: Path, tokenizer: PreTrainedTokenizerFast, prompts) -> None:
    """Raise unless `AutoTokenizer` reloads `path` into a tokenizer that renders and encodes like `tokenizer`."""
    reloaded = AutoTokenizer.from_pretrained(path)
    texts = _render(tokenizer, prompts) + ["<think> 12+30=42 </think> <answer> 42 </answer><|end|> x\n"]
    if _render(reloaded, prompts) != texts[:-1] or reloaded(texts)["input_ids"] != tokenizer(texts)["input_ids"]:
        raise RuntimeError(f"AutoTokenizer.from_pretrained({path}) does not reproduce the built tokenizer")


def base_model_path() -> Path:
    """Directory of the embedded tiny checkpoint (`data/tiny/`), built first when missing."""
    if not (DEFAULT_DIR / "config.json").is_file():
        logger.warning("tiny model missing at %s; building it (a few minutes on CPU)", DEFAULT_DIR)
        staging = DEFAULT_DIR.with_name(f".{DEFAULT_DIR.name}-build-{os.getpid()}")
        build(staging, force=True)
        try:  # atomic publish: a concurrent builder that got there first wins
            staging.rename(DEFAULT_DIR)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not (DEFAULT_DIR / "config.json").is_file():
                raise
    return DEFAULT_DIR


# --------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sapo_core.tiny build [--out DIR] [--seed N] [--force]`."""
    parser = ArgumentParser(prog="python -m sapo_core.tiny", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p_build = sub.add_parser("build", help="build and warm-start the tiny model")
    p_build.add_argument("--out", type=Path, default=DEFAULT_DIR, help="checkpoint directory (default data/tiny/)")
    p_build.add_argument("--seed", type=int, default=TinyBuildConfig.seed, help="build seed")
    p_build.add_argument("--force", action="store_true", help="overwrite an existing checkpoint directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = build(args.out, TinyBuildConfig(seed=args.seed), force=args.force)
    except (FileExistsError, ValueError) as err:  # ValueError: a build setting refused by TinyBuildConfig
        return fail(str(err))
    info = json.loads((out / BUILD_INFO).read_text())
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{out}: {info['n_parameters']:,} params, stopped at update {info['stop']['step']} "
          f"(sampled pass rate {info['stop']['sampled_pass_rate']:.3f}), greedy accuracy "
          f"{info['greedy_accuracy']:.3f} on {info['config']['eval_size']} test problems, "
          f"{info['build_seconds']:.0f} s, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
