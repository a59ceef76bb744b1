"""Benchmark: peak memory of one loss step (log-probs + entropy + gated loss, forward and backward).

TRL 1.16 scores completions through a chunked LM head that never builds the [B, T, V] logits (GRPOTrainer patches
the model with `trl.trainer.utils.add_fused_lm_head`; `_get_per_token_logps_and_entropies` calls it), and
GatedGRPOTrainer inherits it. Three variants, same random Qwen2.5-0.5B-shaped model (vocabulary 151,936, hidden
896, MLP 4864, 14 heads, 2 KV heads, tied embeddings; fewer layers, --layers), same batch, same run:

    ours          GatedGRPOTrainer._compute_loss (sigmoid gate at tau 1 / 1.05)
    trl           GRPOTrainer(loss_type="sapo")._compute_loss, TRL's own SAPO path
    full_logits   the model's plain forward: full logits, trl.trainer.utils.selective_log_softmax and
                  entropy_from_logits over them, then our policy_loss (what a trainer without the chunked head does)

Method: each variant runs in a fresh process. On CPU the peak is the process's resident-set high-water mark:
/proc/self/clear_refs is written "5" after the model and the batch are built (which resets VmHWM to the current
RSS), and the step's memory is VmHWM after the backward minus VmRSS before it (tracemalloc does not see torch's
allocations). On CUDA it is torch.cuda.max_memory_allocated() minus memory_allocated(), after
reset_peak_memory_stats(). The parameters' gradient buffers exist before the step (a micro-batch after the first of
a gradient-accumulation window), so the step's memory is what scoring the tokens costs: activations, the LM head's
tiles or full logits, and the temporaries of the backward. The model is float32 on CPU, bfloat16 on CUDA.

    python benchmarks/bench_memory.py [--device cpu|cuda] [--layers 2] [--batch 8] [--seq 512] [--prompt 64]

Last line: `bench_memory: vs_trl=X (target <= 1.05) vs_full_logits=Y (target <= 0.25) pass|FAIL (<which> over by
<z> %)`; exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TARGET_TRL, TARGET_FULL = 1.05, 0.25
VARIANTS = ("ours", "trl", "full_logits")
QWEN25_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
              "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768}


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; this CPU measurement needs Linux")


def worker(variant: str, opts, out: Path) -> None:
    """Build the model and batch, run one loss forward + backward of `variant`, write its peak memory (MiB)."""
    import logging

    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, set_seed
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    from sapo_core import gates as G
    from sapo_core.config import GatedGRPOConfig
    from sapo_core.data import synthetic_arithmetic
    from sapo_core.loss import policy_loss
    from sapo_core.tiny import base_model_path
    from sapo_core.trainer import GatedGRPOTrainer

    logging.disable(logging.WARNING)
    torch.set_num_threads(opts.threads)
    set_seed(0)
    cuda = opts.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    config = Qwen2Config(num_hidden_layers=opts.layers, **QWEN25_05B)
    model = Qwen2ForCausalLM(config).to(device=opts.device, dtype=dtype)
    b, completion = opts.batch, opts.seq - opts.prompt
    device = torch.device(opts.device)
    inputs = {
        "prompt_ids": torch.randint(0, config.vocab_size, (b, opts.prompt), device=device),
        "prompt_mask": torch.ones(b, opts.prompt, dtype=torch.long, device=device),
        "completion_ids": torch.randint(0, config.vocab_size, (b, completion), device=device),
        "completion_mask": torch.ones(b, completion, dtype=torch.long, device=device),
        "advantages": torch.randn(b, device=device),
        "old_per_token_logps": -torch.rand(b, completion, device=device) * 5,
        "prompt_group": torch.zeros(b, dtype=torch.long, device=device),  # one prompt, B completions
    }
    common = {"output_dir": str(out.parent / variant), "per_device_train_batch_size": b, "num_generations": b,
              "max_completion_length": completion, "bf16": cuda, "use_cpu": not cuda, "report_to": "none",
              "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05, "logging_steps": 1}
    tiny = AutoTokenizer.from_pretrained(base_model_path())  # any tokenizer: the batch is given as token ids
    dataset = synthetic_arithmetic(8, 0)
    if variant in ("ours", "trl"):
        cls, args = (GatedGRPOTrainer, GatedGRPOConfig(**common, gate="sigmoid")) if variant == "ours" else \
            (GRPOTrainer, GRPOConfig(**common, loss_type="sapo"))
        trainer = cls(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                      train_dataset=dataset, processing_class=tiny)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1

        def step():
            trainer._compute_loss(trainer.model, inputs).backward()
    else:
        model.train()

        def step():
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=completion + 1).logits[:, :-1]
            logps = selective_log_softmax(logits, inputs["completion_ids"])
            entropy = entropy_from_logits(logits)  # logged, as the trainers do
            loss, _ = policy_loss(logps, inputs["old_per_token_logps"], inputs["advantages"],
                                  inputs["completion_mask"], gate=G.get_gate("sigmoid"), tau_pos=1.0, tau_neg=1.05,
                                  compute_metrics=False)
            loss.backward()
            del entropy

    for param in model.parameters():  # a micro-batch inside an accumulation window: the gradient buffers exist
        param.grad = torch.zeros_like(param)
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        base = _status_kib("VmRSS")
        step()
        peak_mib = (_status_kib("VmHWM") - base) / 1024
    out.write_text(json.dumps({"variant": variant, "peak_mib": peak_mib}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (Qwen2.5-0.5B has 24)")
    parser.add_argument("--batch", type=int, default=8, help="completions in the batch, B")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence, T (prompt + completion)")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens of each sequence")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "OUT"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.layers < 1 or opts.batch < 2 or not 0 < opts.prompt < opts.seq or opts.threads < 1:
        parser.error("need --layers >= 1, --batch >= 2, 0 < --prompt < --seq and --threads >= 1")
    if opts.worker:
        worker(opts.worker[0], opts, Path(opts.worker[1]))
        return 0
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            out = Path(tmp) / f"{variant}.json"
            cmd = [sys.executable, __file__, "--device", opts.device, "--layers", str(opts.layers), "--batch",
                   str(opts.batch), "--seq", str(opts.seq), "--prompt", str(opts.prompt), "--threads",
                   str(opts.threads), "--worker", variant, str(out)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            peaks[variant] = json.loads(out.read_text())["peak_mib"]
            print(f"  {variant:12s} peak {peaks[variant]:8.1f} MiB", flush=True)
    vs_trl, vs_full = peaks["ours"] / peaks["trl"], peaks["ours"] / peaks["full_logits"]
    ok = vs_trl <= TARGET_TRL and vs_full <= TARGET_FULL
    print(f"Qwen2.5-0.5B shape with {opts.layers} layers, B={opts.batch}, T={opts.seq} ({opts.prompt} prompt + "
          f"{opts.seq - opts.prompt} completion tokens), {opts.device}; peak memory of one loss forward + backward")
    missed = [f"{name} over by {100 * (value / target - 1):.1f} %" for name, value, target in
              (("vs_trl", vs_trl, TARGET_TRL), ("vs_full_logits", vs_full, TARGET_FULL)) if value > target]
    print(f"bench_memory: vs_trl={vs_trl:.3f} (target <= {TARGET_TRL}) vs_full_logits={vs_full:.3f} "
          f"(target <= {TARGET_FULL}) {'pass' if ok else 'FAIL (' + '; '.join(missed) + ')'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
