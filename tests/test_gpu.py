"""CUDA checks (marker `gpu`, run by tools/gpu_check.sh; skipped without CUDA): our trainer's loss and gradients equal
TRL's SAPO on the GPU, and the chunked LM head (TRL's Triton kernel on CUDA) scores tokens as the full logits do."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _trainer(cls, args_cls, tmp_path, **extra):
    from transformers import AutoTokenizer

    from sapo_core.data import synthetic_arithmetic
    from sapo_core.tiny import base_model_path

    args = args_cls(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=8, num_generations=8,
                    max_completion_length=16, report_to="none", sapo_temperature_pos=1.0, sapo_temperature_neg=1.05,
                    bf16=False, **extra)
    trainer = cls(model=str(base_model_path()), args=args, train_dataset=synthetic_arithmetic(8, 0),
                  reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                  processing_class=AutoTokenizer.from_pretrained(base_model_path()))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _inputs(device):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (8, 22), generator=g)
    return {"prompt_ids": ids[:, :6].to(device), "prompt_mask": torch.ones(8, 6, dtype=torch.long, device=device),
            "completion_ids": ids[:, 6:].to(device),
            "completion_mask": (torch.arange(16) < torch.randint(4, 17, (8, 1), generator=g)).long().to(device),
            "advantages": torch.randn(8, generator=g).to(device),
            "old_per_token_logps": (-torch.rand(8, 16, generator=g) * 4).to(device),
            "prompt_group": torch.zeros(8, dtype=torch.long, device=device)}


def test_sigmoid_gate_matches_trl_sapo_on_cuda(tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    from sapo_core.trainer import GatedGRPOConfig, GatedGRPOTrainer

    ours = _trainer(GatedGRPOTrainer, GatedGRPOConfig, tmp_path, gate="sigmoid")
    trl = _trainer(GRPOTrainer, GRPOConfig, tmp_path, loss_type="sapo")
    assert next(ours.model.parameters()).is_cuda and next(trl.model.parameters()).is_cuda
    inputs = _inputs(ours.model.device)
    losses, grads = [], []
    for trainer in (ours, trl):
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    # method §7.5: our f is TRL's 4/tau sigmoid(tau (x-1)) plus the constant 1 - 2/tau per row, so the values differ
    # by the aggregated -A (1 - 2/tau) (TRL's sapo reduction: mean over sequences of the token mean) and the
    # gradients are equal.
    adv = inputs["advantages"]
    tau = torch.where(adv > 0, torch.tensor(1.0, device=adv.device), torch.tensor(1.05, device=adv.device))
    offset = (-adv * (1 - 2 / tau)).mean()
    torch.testing.assert_close(losses[0] - losses[1], offset, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_chunked_head_matches_full_logits_on_cuda(tmp_path):
    from trl.trainer.utils import selective_log_softmax

    from sapo_core.trainer import GatedGRPOConfig, GatedGRPOTrainer

    trainer = _trainer(GatedGRPOTrainer, GatedGRPOConfig, tmp_path, gate="erf")
    inputs = _inputs(trainer.model.device)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        chunked, entropy, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 16,
                                                                         compute_entropy=True)
        logits = trainer.model(input_ids=ids, attention_mask=mask, logits_to_keep=17).logits[:, :-1].float()
    keep = inputs["completion_mask"].bool()
    full = selective_log_softmax(logits, inputs["completion_ids"])
    torch.testing.assert_close(chunked[keep], full[keep], rtol=1e-4, atol=1e-4)
    full_entropy = -(logits.log_softmax(-1).exp() * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(entropy[keep], full_entropy[keep], rtol=1e-4, atol=1e-4)
