"""End-to-end training on the tiny model: every gate trains, logs the required metrics, matches TRL's
SAPO/GRPO trainers, refuses to overwrite, and resumes."""

import json
from pathlib import Path

import pytest
import torch
from conftest import CrashAfterStep
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback

from sapo_core import metrics as M
from sapo_core.config import cpu_processes
from sapo_core.loss import METRIC_KEYS
from sapo_core.recipe import parse_args
from sapo_core.rewards import correctness_reward, format_reward
from sapo_core.train import REQUIRED_METRICS, RunDirError, main, read_metrics, train

# A few seconds per run: 2 prompts x 8 rollouts per step, short completions.
SMOKE = {"max_steps": 2, "train_size": 32, "eval_size": 8, "per_device_train_batch_size": 16,
         "max_completion_length": 24, "save_steps": 2, "learning_rate": 1e-3, "heldout_n": 2}


def flags(values: dict) -> list[str]:
    """{"max_steps": 2, ...} as command-line flags."""
    out = []
    for key, value in values.items():
        out += [f"--{key}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return out


def smoke(run_dir, resume=False, **over):
    """The tiny-cpu recipe with the SMOKE budget and `over`, parsed as the CLI parses it."""
    return parse_args(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(run_dir), *flags({**SMOKE, **over}),
                       *(["--resume"] if resume else [])])


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def base_dir():
    from sapo_core.tiny import base_model_path
    return base_model_path()


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["clip", "sigmoid", "erf", "arctan", "softsign"])
def test_each_gate_trains_and_logs_required_metrics(tmp_path, base_dir, gate):
    summary = train(smoke(tmp_path / "run", gate=gate))
    before, after = _weights(base_dir), _weights(tmp_path / "run" / "final")
    unchanged = [name for name, value in before.items() if torch.equal(value, after[name])]
    assert not unchanged, f"parameters not updated by training with gate={gate}: {unchanged}"
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        missing = [key for key in REQUIRED_METRICS if key not in row]  # every registered name is logged ...
        assert not missing, f"metrics.jsonl lacks {missing}"
        assert not M.unlisted(row), f"not in sapo_core.metrics: {M.unlisted(row)}"  # ... and only those
        assert 0.0 <= row["eur"] <= 1.0
    # the second update reuses the batch (num_iterations=2): the ratio has left 1, and so has EUR (method §4.1)
    assert rows[1]["ratio/max"] > rows[1]["ratio/min"]
    assert rows[0]["eur"] == 1.0 and (rows[1]["eur"] < 1.0 or gate == "clip")
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["gate"] == gate and prov["num_iterations"] == 2 and prov["versions"]["trl"] == "1.16.0"
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "finished"
    final = summary["heldout_final"]["synthetic"]
    assert 0.0 <= final["mean@n"] <= 1.0 and 0.0 <= final["greedy"] <= 1.0 and final["n"] == 2


@pytest.mark.slow
def test_logged_ratio_metrics_are_those_of_the_whole_step_under_gradient_accumulation(tmp_path):
    """Two micro-batches of 8 per step log what one micro-batch of 16 logs: the step's tokens are pooled."""
    one = read_metrics(train(smoke(tmp_path / "one"))["run_dir"])
    two = read_metrics(train(smoke(tmp_path / "two", per_device_train_batch_size=8, gradient_accumulation_steps=2,
                                   steps_per_generation=2))["run_dir"])
    for a, b in zip(one, two):
        assert a["reward"] == b["reward"]  # the same 16 completions
        assert b["tokens/count"] == a["tokens/count"]  # not the mean of the two micro-batches' counts
        for key in ("ratio/min", "ratio/max", "ratio/var", "ratio/p01", "ratio/p99", "ratio/neg/var",
                    "gate_weight/mean", "eur", "eur/pos", "eur/neg"):  # EUR: prompt groups split by TRL's shuffle
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    assert two[1]["ratio/var"] > 0  # the reused batch is off-policy


@pytest.mark.slow
def test_the_last_step_is_logged_when_logging_steps_does_not_divide_max_steps(tmp_path):
    rows = read_metrics(train(smoke(tmp_path / "run", max_steps=3, logging_steps=2, save_steps=4))["run_dir"])
    assert [r["step"] for r in rows] == [2, 3]
    assert all(set(REQUIRED_METRICS) <= set(r) for r in rows)


def _parity_runs(tmp_path, base_dir, overrides, loss_type):
    """(our logs, our params, TRL's logs, TRL's params): GatedGRPOTrainer and TRL's GRPOTrainer with
    `loss_type`, from the same seed on the same data and arguments."""
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    from sapo_core.train import datasets_for
    from sapo_core.trainer import GatedGRPOTrainer

    run = smoke(tmp_path / "ours", max_steps=3, **overrides)
    ours_args = run.training
    ours_args.save_strategy = "no"
    shared = {k: v for k, v in ours_args.to_dict().items()
              if k in GRPOConfig.__dataclass_fields__
              and k not in ("loss_type", "output_dir", "generation_batch_size")}  # derived in __post_init__
    trl_args = GRPOConfig(**{**shared, "loss_type": loss_type, "output_dir": str(tmp_path / "trl")})
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_ds = datasets_for(run.script, ours_args.data_seed)
    out = []
    for cls, args in ((GatedGRPOTrainer, ours_args), (GRPOTrainer, trl_args)):
        set_seed(ours_args.seed)
        trainer = cls(model=str(base_dir), reward_funcs=[format_reward, correctness_reward], args=args,
                      train_dataset=train_ds,
                      processing_class=tokenizer)
        trainer.train()
        out.append([h for h in trainer.state.log_history if "loss" in h])
        out.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("tau", [2.0, None])
def test_sigmoid_gate_matches_trl_sapo_trainer(tmp_path, base_dir, tau):
    """Same seed, same rollouts: identical rewards, parameters and (at tau = 2, where method §2's additive
    constant 1 - 2/tau vanishes) identical losses."""
    over = {"gate": "sigmoid"} if tau is None else {"gate": "sigmoid", "sapo_temperature_pos": tau,
                                                    "sapo_temperature_neg": tau}
    ours, ours_params, ref, ref_params = _parity_runs(tmp_path, base_dir, over, "sapo")
    assert len(ours) == len(ref) == 3
    # our loss metrics reach the Trainer's log history (what every report_to backend is sent)
    assert all(set(METRIC_KEYS) <= set(a) for a in ours) and ours[1]["ratio/var"] > 0
    assert sum("reward" in b for b in ref) == 2  # TRL logs rollout metrics on generation steps (1 and 3)
    for a, b in zip(ours, ref):
        if "reward" in b:
            assert a["reward"] == b["reward"]
            assert a["rewards/correctness_reward/mean"] == b["rewards/correctness_reward/mean"]
        if tau is not None:
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
    for name, value in ref_params.items():
        # float32 rounding differs (closed-form g' vs TRL's autograd); Adam can magnify it for tiny
        # gradients, so allow 1% of one Adam step (lr = 1e-3)
        torch.testing.assert_close(ours_params[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.0, 0.04])  # beta > 0: TRL's KL with its default bias correction
def test_clip_gate_matches_trl_grpo_trainer(tmp_path, base_dir, beta):
    ours, ours_params, ref, ref_params = _parity_runs(tmp_path, base_dir, {"gate": "clip", "beta": beta}, "grpo")
    assert len(ours) == len(ref) == 3
    for a, b in zip(ours, ref):
        assert a["reward"] == b.get("reward", a["reward"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        if beta:
            assert a["kl"] == pytest.approx(b["kl"], rel=1e-5, abs=1e-7)
    for name, value in ref_params.items():
        # float32 rounding differs (closed-form g' vs TRL's autograd); Adam can magnify it for tiny
        # gradients, so allow 1% of one Adam step (lr = 1e-3)
        torch.testing.assert_close(ours_params[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_finished_run_is_never_overwritten(tmp_path):
    train(smoke(tmp_path / "run", max_steps=1, save_steps=2))
    stamp = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="finished run; it is never overwritten"):
        train(smoke(tmp_path / "run", max_steps=1, save_steps=2))
    with pytest.raises(RunDirError, match="finished run"):
        train(smoke(tmp_path / "run", resume=True, max_steps=1, save_steps=2))
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == stamp



@pytest.mark.slow
def test_resume_after_interrupted_run_reproduces_the_uninterrupted_run(tmp_path):
    budget = {"max_steps": 6, "save_steps": 2}
    train(smoke(tmp_path / "whole", **budget))
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(smoke(run, **budget), callbacks=[CrashAfterStep(3)])  # crashes after step 3; step 3's generation is lost
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["error"] == "KeyboardInterrupt: simulated crash"
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    # what a kill -9 during step 4's writes leaves: half a metrics line, a checkpoint without its state
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "loss": 0.')
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    (run / "checkpoints" / "checkpoint-4").mkdir()
    (run / "checkpoints" / "checkpoint-4" / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(RunDirError, match=r"unfinished run \(interrupted: KeyboardInterrupt.*pass --resume"):
        train(smoke(run, **budget))
    with pytest.raises(RunDirError, match="different config.*learning_rate"):
        train(smoke(run, resume=True, **budget, learning_rate=0.5))
    summary = train(smoke(run, resume=True, **budget))
    assert summary["train_metrics"]["train_runtime"] > 0
    # the base model's held-out check ran before the crash; the resumed run still reports the gain from it
    assert summary["heldout_base"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["heldout_base"]
    assert set(summary["heldout_gain"]["synthetic"]) == {"mean@n", "greedy"}
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["resumed_from"].endswith("checkpoint-2")
    prov = json.loads((run / "provenance.json").read_text())  # how it started, and each continuation
    assert prov["resumed_from"] is None and [r["resumed_from"][-12:] for r in prov["resumes"]] == ["checkpoint-2"]
    # the resumed run is the same run: every logged value but wall-clock times, and the final weights
    timing = ("step_time",)
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(whole, resumed):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    final_a, final_b = _weights(tmp_path / "whole" / "final"), _weights(run / "final")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_inputs_that_cannot_be_loaded_leave_no_run_directory(tmp_path, capsys):
    cli = ["--config", "configs/tiny-cpu.yaml", "--run_dir", str(tmp_path / "r")]
    assert main([*cli, "--model", "/no/such/model"]) == 2
    assert "model='/no/such/model' is not a directory" in capsys.readouterr().err
    bad = tmp_path / "not-a-model"
    bad.mkdir()  # a directory without a tokenizer
    assert main([*cli, "--model", str(bad)]) == 2
    assert f"model='{bad}' cannot be loaded" in capsys.readouterr().err
    assert main([*cli, "--dataset", "gsm8k", "--data_dir", str(tmp_path / "empty")]) == 2
    assert "no such data file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    (tmp_path / "file").write_text("x")
    assert main(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(tmp_path / "file")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


class _Fail(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        raise RuntimeError("reward server went away")


@pytest.mark.slow
def test_a_failed_run_records_why_and_can_be_resumed(tmp_path):
    with pytest.raises(RuntimeError, match="reward server went away"):
        train(smoke(tmp_path / "run"), callbacks=[_Fail()])
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == "RuntimeError: reward server went away"
    with pytest.raises(RunDirError, match=r"\(failed: RuntimeError: reward server went away\); pass --resume"):
        train(smoke(tmp_path / "run"))
    train(smoke(tmp_path / "run", resume=True))
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "finished"


@pytest.mark.parametrize("extra, message", [
    (["--learnin_rate", "1"], "unknown flag 'learnin_rate' (did you mean 'learning_rate'?)"),
    (["--gate", "tanh"], "gate='tanh'"),
    (["--aggregation", "sum"], "aggregation='sum' is not allowed"),
    (["--tau_convention", "wide"], "tau_convention='wide' is not allowed"),
])
def test_cli_refuses_bad_flags_with_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert main(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_cli_refuses_an_unknown_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("gate: erf\nlearning_rat: 1.0e-5\n")
    assert main(["--config", str(recipe), "--run_dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s)" in err and "'learning_rat' (did you mean 'learning_rate'?)" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_cpu_processes_log_the_same_keys_as_one(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): one metrics file, the one-process key set, tokens of both
    ranks."""
    import os
    import subprocess
    import sys

    one = tmp_path / "one"
    train(smoke(one))
    two = tmp_path / "two"
    # accelerate's `--cpu` flag selects its one-process launcher; `--multi_gpu` is its torchrun launcher,
    # and on a machine without CUDA sapo_core.train makes those ranks CPU processes joined over gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "sapo_core.train", "--config", "configs/tiny-cpu.yaml", "--run_dir", str(two), *flags(SMOKE)]
    env = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_USE_CPU", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows_one, rows_two = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in rows_two] == [1, 2]
    assert set().union(*rows_one) == set().union(*rows_two)
    # each rank scores its own 16 completions: twice the tokens of one process, roughly
    assert rows_two[0]["tokens/count"] > 1.5 * rows_one[0]["tokens/count"]
    assert json.loads((two / "status.json").read_text())["state"] == "finished"
    assert json.loads((two / "provenance.json").read_text())["num_processes"] == 2
    assert json.loads((one / "provenance.json").read_text())["num_processes"] == 1


def test_gated_config_derives_loss_type_and_refuses_a_conflicting_one():
    from sapo_core.config import GatedGRPOConfig

    assert GatedGRPOConfig(output_dir="x", gate="sigmoid", bf16=False).loss_type == "sapo"
    assert GatedGRPOConfig(output_dir="x", gate="erf", aggregation="token_mean", bf16=False).loss_type == "dapo"
    with pytest.raises(ValueError, match="loss_type='cispo' is not used"):
        GatedGRPOConfig(output_dir="x", gate="erf", loss_type="cispo", bf16=False)
    with pytest.raises(ValueError, match="unknown gate 'tanh'"):
        GatedGRPOConfig(output_dir="x", gate="tanh", bf16=False)
    with pytest.raises(ValueError, match="aggregation='sum' is not allowed"):
        GatedGRPOConfig(output_dir="x", gate="erf", aggregation="sum", bf16=False)



def test_several_processes_without_cuda_train_as_cpu_processes(monkeypatch):
    """torchrun / `accelerate launch --multi_gpu` on a CPU machine: the ranks must join over gloo."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cpu_processes() is False and smoke(Path("x")).training.use_cpu is False  # one process: transformers' choice
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cpu_processes() is True  # (a parse here would start a process group; the two-process test runs one)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_processes() is False


def test_a_corrupt_metrics_line_that_is_not_the_last_is_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2 is not a JSON object"):
        read_metrics(tmp_path)


@pytest.mark.slow
def test_one_owner_per_run_dir_and_resume_after_kill_9_gives_the_uninterrupted_run(tmp_path, capsys):
    """A live owner (here paused) keeps its directory: a second `--resume` is refused and touches nothing; SIGKILL
    at an arbitrary moment (mid-step, mid-checkpoint, mid-write) releases it, and `--resume` gives the
    uninterrupted run. Only the killed run is a process of its own; the others run in this one, on one thread as
    the process does (OMP_NUM_THREADS=1), so that the runs compare bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    over = flags({**SMOKE, "max_steps": 8, "save_steps": 2})

    def cli(run_dir, *extra):
        return ["--config", "configs/tiny-cpu.yaml", "--run_dir", str(run_dir), *extra, *over]

    def same_run(a, b):
        timing = ("step_time",)
        rows_a, rows_b = read_metrics(a), read_metrics(b)
        assert [r["step"] for r in rows_b] == list(range(1, 9))
        for x, y in zip(rows_a, rows_b):
            assert {k: v for k, v in x.items() if k not in timing} == {k: v for k, v in y.items() if k not in timing}
        final_a, final_b = _weights(a / "final"), _weights(b / "final")
        assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sapo_core.train", *cli(killed)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(cli(whole)) == 0  # meanwhile, the uninterrupted run
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if (killed / "metrics.jsonl").exists() and (killed / "metrics.jsonl").read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be signalled"
        proc.send_signal(signal.SIGSTOP)  # a live owner, paused at an arbitrary moment
        before = {p.name: p.read_bytes() for p in killed.iterdir() if p.is_file()}
        capsys.readouterr()
        assert main(cli(killed, "--resume")) == 2
        assert f"is being trained right now by pid {proc.pid}" in capsys.readouterr().err.strip().splitlines()[-1]
        assert {p.name: p.read_bytes() for p in killed.iterdir() if p.is_file()} == before
        proc.send_signal(signal.SIGKILL)  # the owner dies where it was paused: the lock is released with it
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert json.loads((killed / "status.json").read_text())["state"] == "running"
        assert main(cli(killed, "--resume")) == 0
    finally:
        torch.set_num_threads(threads)
        if proc.poll() is None:
            proc.kill()
    same_run(whole, killed)


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["softsign", "clip"])
def test_extreme_ratios_in_real_steps_stay_finite(tmp_path, gate):
    """A learning rate ~1000x too large with 4 updates per batch drives ratios to ~1e-7 and beyond 2:
    every logged loss, gradient norm and metric stays finite, and so do the weights."""
    import math

    train(smoke(tmp_path / "run", gate=gate, max_steps=4, num_iterations=4, save_steps=4, learning_rate=0.05,
                max_grad_norm=1000.0))
    rows = read_metrics(tmp_path / "run")
    assert min(r["ratio/min"] for r in rows) < 1e-4 and max(r["ratio/max"] for r in rows) > 2.0
    for row in rows:
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v) and "/pos/" not in k
               and "/neg/" not in k]  # a sign group may be empty (nan by definition)
        assert not bad, (row["step"], bad)
    assert all(torch.isfinite(w).all() for w in _weights(tmp_path / "run" / "final").values())


@pytest.mark.slow
@pytest.mark.parametrize("config_text", [None, "", "- a list\n"])
def test_resume_refuses_a_run_whose_config_is_missing_empty_or_not_a_mapping(tmp_path, capsys, config_text):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(smoke(run_dir, max_steps=4), callbacks=[CrashAfterStep(3)])
    if config_text is None:
        (run_dir / "config.yaml").unlink()
    else:
        (run_dir / "config.yaml").write_text(config_text)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in (".lock", "owner.json")}
    assert main(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(run_dir), "--resume",
                 *flags({**SMOKE, "max_steps": 4})]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "config.yaml" in last and "Traceback" not in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in (".lock", "owner.json")} \
        == files


@pytest.mark.slow
@pytest.mark.parametrize("name, text", [("status.json", "[1, 2]"), ("status.json", "{not json"),
                                        ("provenance.json", "3")])
def test_a_damaged_run_file_is_refused_by_name(tmp_path, capsys, name, text):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(smoke(run_dir, max_steps=4), callbacks=[CrashAfterStep(1)])
    (run_dir / name).write_text(text)
    assert main(["--config", "configs/tiny-cpu.yaml", "--run_dir", str(run_dir), "--resume",
                 *flags({**SMOKE, "max_steps": 4})]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and name in last and "Traceback" not in err
    assert (run_dir / name).read_text() == text


@pytest.mark.slow
def test_a_corrupt_metrics_file_on_resume_leaves_the_status_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(smoke(run_dir, max_steps=4), callbacks=[CrashAfterStep(3)])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(True)
    (run_dir / "metrics.jsonl").write_text(lines[0] + "{broken\n" + "".join(lines[1:]))
    with pytest.raises(RunDirError, match="metrics.jsonl, line 2 is not a JSON object"):
        train(smoke(run_dir, resume=True, max_steps=4))
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"


def test_missing_metrics_and_the_printed_summary():
    from sapo_core.train import missing_metrics, summary_text

    assert missing_metrics([]) == list(REQUIRED_METRICS)
    row = {key: 0.0 for key in REQUIRED_METRICS}
    assert missing_metrics([{"step": 1}, row]) == []
    last = {"step": 2, "loss": 1.0}
    assert missing_metrics([row, last]) == [k for k in REQUIRED_METRICS if k not in last]
    assert json.loads(summary_text({"gate": "erf", "train_metrics": {"x": 1}, "run_dir": Path("r")})) == \
        {"gate": "erf", "run_dir": "r"}
