"""Forward + backward time of sapo_core.loss.policy_loss against TRL 1.16.0's own loss expressions.

Every gate runs against TRL's loss_type="sapo" expression, and gate="clip" also against "grpo", on
the same float32 CPU tensors in the same run (interleaved repeats, median). Before timing, the
reproduced TRL expressions are checked against TRL's real `GRPOTrainer._compute_loss` and our loss
against them. Last line: the worst ratio, over the gates, of our wall-clock median to that of TRL's
expression for the same loss ("sapo" for every smooth gate, "grpo" for clip, whose min/clamp form
we share), at the larger size without metrics; the line before gives the same by CPU time. Exit status 0
when the worst ratio meets the target, 1 when it misses (the last line then says by how much):

    bench_loss: worst_ratio=<x> (target <= 2.0) pass|FAIL

The target is <= 2.0: our loss is the plain-torch equation (the stop-gradient form of method §2 and a
masked aggregate), a few elementwise passes more than TRL's expression, which is negligible inside a
training step; `benchmarks/bench_trainer.py` (<= 1.05 on step time and memory) is the binding target.

    .venv/bin/python benchmarks/bench_loss.py
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections import defaultdict
from types import SimpleNamespace

import torch

from sapo_core.gates import available_gates
from sapo_core.loss import masked_aggregate, policy_loss

THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # 1: immune to other jobs on a small machine
SIZES = ((8, 512, 400), (64, 2048, 150))  # (B, T, repeats)
TAU_POS, TAU_NEG, EPS = 1.0, 1.05, 0.2
TARGET = 2.0
TRL_COUNTERPART = {"clip": "trl_grpo"}  # TRL's expression of the same loss; "trl_sapo" for every smooth gate


# TRL 1.16.0 trl/trainer/grpo_trainer.py, `_compute_loss`, importance_sampling_level="token", beta=0.
def trl_sapo(logps, old_logps, advantages, mask):
    """TRL's loss_type="sapo" loss (eval mode: no gradient-accumulation normaliser)."""
    advantages = advantages.unsqueeze(1)                                       # :3058-3059
    log_ratio = logps - old_logps                                              # :3083
    coef_1 = torch.exp(log_ratio)                                              # :3085, :3095
    temperatures = torch.where(advantages > 0, TAU_POS, TAU_NEG)               # :3122
    soft_coef_1 = torch.sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures  # :3123
    per_token_loss = -soft_coef_1 * advantages                                 # :3124
    return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()  # :3154


def trl_grpo(logps, old_logps, advantages, mask):
    """TRL's loss_type="grpo" loss (eval mode)."""
    advantages = advantages.unsqueeze(1)                                       # :3058-3059
    coef_1 = torch.exp(logps - old_logps)                                      # :3083, :3085, :3095
    coef_2 = torch.clamp(coef_1, 1 - EPS, 1 + EPS)                             # :3113
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)      # :3118-3120
    return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()  # :3154


def trl_real(loss_type, logps, old_logps, advantages, mask):
    """TRL's own `GRPOTrainer._compute_loss` on a stub trainer that hands it `logps`."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    def same(t, **_):  # single process: gather and reduce are the identity
        return t

    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        loss_type=loss_type, epsilon_low=EPS, epsilon_high=EPS, beta=0.0, use_vllm=False,
        args=SimpleNamespace(delta=None, sapo_temperature_pos=TAU_POS, sapo_temperature_neg=TAU_NEG),
        model=SimpleNamespace(training=False), current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(gather=same, reduce=same, gather_for_metrics=same, num_processes=1))
    ids = torch.zeros_like(mask)
    inputs = {"prompt_ids": ids[:, :1], "prompt_mask": mask[:, :1], "completion_ids": ids,
              "completion_mask": mask, "advantages": advantages, "old_per_token_logps": old_logps}
    return GRPOTrainer._compute_loss(stub, None, inputs)


def make_inputs(batch, length, seed=0):
    """float32 log-probs, ratios spread like a second update on a batch, TRL's int64 right-padded mask."""
    gen = torch.Generator().manual_seed(seed)
    old = -3.0 * torch.rand(batch, length, generator=gen)
    logps = (old + 0.3 * torch.randn(batch, length, generator=gen)).requires_grad_()
    advantages = torch.randn(batch, generator=gen)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length) < lengths[:, None]).long()
    return logps, old, advantages, mask


def grad_of(fn, logps):
    """(loss value, d loss / d logps) of the loss `fn()` builds."""
    logps.grad = None
    loss = fn()
    loss.backward()
    return loss.detach(), logps.grad.clone()


def check_parity(logps, old, adv, mask):
    """Our reproductions equal TRL's real code; our sigmoid/clip equal them (value up to method §2's constant)."""
    for name, ours in (("sapo", trl_sapo), ("grpo", trl_grpo)):
        v_real, g_real = grad_of(lambda name=name: trl_real(name, logps, old, adv, mask), logps)
        v_ours, g_ours = grad_of(lambda ours=ours: ours(logps, old, adv, mask), logps)
        assert torch.equal(v_real, v_ours) and torch.equal(g_real, g_ours), f"TRL {name} reproduction differs"
    tau = torch.where(adv > 0, TAU_POS, TAU_NEG)
    offset = -masked_aggregate((adv * (1 - 2 / tau))[:, None], mask.bool())  # method §2's constant 1 - 2/tau
    for gate, ref, shift in (("sigmoid", trl_sapo, offset), ("clip", trl_grpo, 0.0)):
        v_ref, g_ref = grad_of(lambda ref=ref: ref(logps, old, adv, mask), logps)
        v, g = grad_of(lambda gate=gate: policy_loss(logps, old, adv, mask, gate=gate, compute_metrics=False)[0], logps)
        assert abs(float(v - v_ref - shift)) <= 1e-6 * max(1.0, abs(float(v_ref))), (gate, float(v), float(v_ref))
        assert float((g - g_ref).abs().max()) <= 1e-6 * float(g_ref.abs().max()), gate


def time_all(candidates, logps, repeats, seed=0):
    """Median wall and CPU seconds of forward + backward per candidate; each round runs them in a new random order."""
    rng = random.Random(seed)
    wall, cpu = defaultdict(list), defaultdict(list)
    names = list(candidates)
    for rep in range(repeats + 3):  # 3 warm-up rounds
        rng.shuffle(names)
        for name in names:
            logps.grad = None
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            candidates[name]().backward()
            elapsed_wall, elapsed_cpu = time.perf_counter() - start_wall, time.thread_time() - start_cpu
            if rep >= 3:
                wall[name].append(elapsed_wall)
                cpu[name].append(elapsed_cpu)
    return ({name: statistics.median(t) for name, t in wall.items()},
            {name: statistics.median(t) for name, t in cpu.items()})


def main() -> int:
    torch.set_num_threads(THREADS)
    gates = available_gates() + ["clip"]
    print(f"loss benchmark: torch {torch.__version__}, {THREADS} thread(s) per candidate (torch.set_num_threads), "
          "float32, CPU, int64 mask; forward + backward; medians of interleaved repeats in random order")
    print("  wall = time.perf_counter (the target uses it), cpu = time.thread_time (the compute thread's own CPU")
    print("  time, blind to other jobs taking the core). /sapo, /grpo = our median / TRL's median, same tensors")
    check_parity(*make_inputs(16, 256, seed=1))
    print("parity: TRL 1.16.0 GRPOTrainer._compute_loss == reproduced sapo/grpo expressions; "
          "sigmoid == sapo (grad; value + method §2 constant), clip == grpo")
    header = (f"{'B x T':>8} {'gate':>9} {'metrics':>7} | {'ours wall':>9} {'/sapo':>6} {'/grpo':>6} | "
              f"{'ours cpu':>9} {'/sapo':>6} {'/grpo':>6}   (ms)")
    print(header)
    print("-" * len(header))
    worst = worst_cpu = 0.0
    for batch, length, repeats in SIZES:
        inputs = make_inputs(batch, length)
        candidates = {"trl_sapo": lambda x=inputs: trl_sapo(*x), "trl_grpo": lambda x=inputs: trl_grpo(*x)}
        for gate in gates:
            for metrics in (False, True):
                candidates[(gate, metrics)] = (lambda x=inputs, g=gate, m=metrics: policy_loss(
                    *x, gate=g, compute_metrics=m)[0])
        wall, cpu = time_all(candidates, inputs[0], repeats)
        size = f"{batch}x{length}"
        for name in ("trl_sapo", "trl_grpo"):
            print(f"{size:>8} {'TRL ' + name[4:]:>9} {'-':>7} | {1e3 * wall[name]:9.3f} {'':>6} {'':>6} | "
                  f"{1e3 * cpu[name]:9.3f}")
        for gate in gates:
            for metrics in (False, True):
                w, c = wall[(gate, metrics)], cpu[(gate, metrics)]
                print(f"{size:>8} {gate:>9} {'yes' if metrics else 'no':>7} | {1e3 * w:9.3f} "
                      f"{w / wall['trl_sapo']:6.3f} {w / wall['trl_grpo']:6.3f} | {1e3 * c:9.3f} "
                      f"{c / cpu['trl_sapo']:6.3f} {c / cpu['trl_grpo']:6.3f}")
                if (batch, length) == SIZES[-1][:2] and not metrics:
                    reference = TRL_COUNTERPART.get(gate, "trl_sapo")
                    worst = max(worst, w / wall[reference])
                    worst_cpu = max(worst_cpu, c / cpu[reference])
    print(f"worst ratio by cpu time at {SIZES[-1][0]}x{SIZES[-1][1]} without metrics: {worst_cpu:.3f}")
    verdict = "pass" if worst <= TARGET else f"FAIL (over by {100 * (worst / TARGET - 1):.1f} %)"
    print(f"bench_loss: worst_ratio={worst:.3f} (target <= {TARGET}) {verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
