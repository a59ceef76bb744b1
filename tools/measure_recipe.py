"""Measure whether the gates act on a recipe: train gates x seeds, print one table.

    .venv/bin/python tools/measure_recipe.py --config configs/tiny-offpolicy.yaml --gates softsign,sigmoid \
        --seeds 0 --out /tmp/rs/probe -- --learning_rate 1e-4 --num_iterations 4

Every run is `python -m sapo_core.train --config CONFIG --gate G --seed S --run_dir OUT/G-sS [FLAGS after --]`,
one process each (OMP_NUM_THREADS=1, `nice -n 10`), `--jobs` at a time. The recipe must set
`heldout_benchmarks: synthetic`: training then evaluates the base and the trained model on the run's own
held-out set (sampled mean@n at heldout_temperature and greedy, through sapo_core.evaluate; method §6).

Per run the table gives, over the second half of training (steps > max_steps / 2), the mean over steps of the
effective update ratio (`eur`, the paper's eq. 12), of the share of tokens with gate weight f' < 0.5
(`gate_weight/low_frac`, method §4) and of `ratio/var` (and the largest step's); held-out greedy and sampled
accuracy before -> after and the sampled gain; the wall and CPU seconds of the training process (CPU seconds:
its time on an idle core); then per gate the range over seeds of EUR and of the gain. A run already finished in
OUT is reused (the CLI never overwrites one), so a rerun after a failure only trains what is missing. The table
goes to OUT/table.md and the rows to OUT/rows.json (with a time stamp in the name when those exist).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from sapo_core.train import read_metrics

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_logged(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run `cmd` under nice with its output in `log`: (wall s, CPU s); an error names the log. CPU seconds of a
    one-thread process are its wall time on an idle core, a measure that the other jobs on a shared machine
    do not inflate."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(["nice", "-n", "10", *cmd], stdout=fh, stderr=subprocess.STDOUT, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone (jobs run side by side)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; see {log}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def one_run(gate: str, seed: int, args, flags: list[str]) -> dict:
    """Train one (gate, seed) unless finished; the row of the table."""
    run_dir = args.out / f"{gate}-s{seed}"
    argv = ["--config", args.config, "--gate", gate, "--seed", str(seed), "--run_dir", str(run_dir), *flags]
    row = {"gate": gate, "seed": seed, "train_s": None, "train_cpu_s": None}
    if not (run_dir / "summary.json").exists():
        row["train_s"], row["train_cpu_s"] = run_logged([PY, "-m", "sapo_core.train", *argv],
                                                        args.out / f"{gate}-s{seed}.train.log")
    metrics = read_metrics(run_dir)
    late = [m for m in metrics if m["step"] > max(m["step"] for m in metrics) / 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    if "synthetic" not in summary.get("heldout_final", {}):
        raise ValueError(f"{run_dir}/summary.json has no held-out synthetic check; the recipe must set "
                         "heldout_benchmarks: synthetic")
    base, final = summary["heldout_base"]["synthetic"], summary["heldout_final"]["synthetic"]
    row.update({
        "low_frac_2nd_half": sum(m["gate_weight/low_frac"] for m in late) / len(late),
        "ratio_var_2nd_half": sum(m["ratio/var"] for m in late) / len(late),
        # method §4: the effective update ratio (the paper's eq. 12); None for a run logged before EUR existed
        "eur_2nd_half": (sum(m["eur"] for m in late) / len(late)) if all("eur" in m for m in late) else None,
        "ratio_var_max": max(m["ratio/var"] for m in metrics),
        "greedy_base": base.get("greedy"), "greedy_final": final.get("greedy"),
        "sampled_base": base["mean@n"], "sampled_final": final["mean@n"], "n": final["n"],
        "gain": final["mean@n"] - base["mean@n"], "train_runtime_s": summary["train_runtime_s"],
    })
    return row


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    argv = sys.argv[1:]
    own, flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--gates", default="clip,sigmoid,erf,arctan,softsign")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(own)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(g, int(s)) for g in args.gates.split(",") for s in args.seeds.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, g, s, args, flags) for g, s in jobs]
        rows = [f.result() for f in tqdm(futures, desc="runs")]
    lines = ["| gate | seed | EUR (2nd half) | low_frac (2nd half) | ratio var (2nd half / max) | greedy | "
             "sampled mean@n | gain | train s (wall / CPU / trainer) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['train_s']:.0f} / {r['train_cpu_s']:.0f}" if r["train_s"] is not None else "- / -"
        lines.append(f"| {r['gate']} | {r['seed']} | {_num(r['eur_2nd_half'])} | {r['low_frac_2nd_half']:.4f} | "
                     f"{r['ratio_var_2nd_half']:.4f} / "
                     f"{r['ratio_var_max']:.4f} | {_num(r['greedy_base'])} -> {_num(r['greedy_final'])} | "
                     f"{r['sampled_base']:.3f} -> {r['sampled_final']:.3f} | {r['gain']:+.3f} | {wall} / "
                     f"{r['train_runtime_s']:.0f} |")
    lines += ["", "Per gate over seeds, min-max: EUR (2nd half) and sampled gain; the gates act when two gates' EUR "
              "ranges are separated.", "| gate | seeds | EUR | gain |", "|---|---|---|---|"]
    for gate in dict.fromkeys(r["gate"] for r in rows):
        mine = [r for r in rows if r["gate"] == gate]
        eur = [r["eur_2nd_half"] for r in mine if r["eur_2nd_half"] is not None]
        gain = [r["gain"] for r in mine]
        eur_text = f"{min(eur):.3f} - {max(eur):.3f}" if eur else "-"
        lines.append(f"| {gate} | {len(mine)} | {eur_text} | {min(gain):+.3f} - {max(gain):+.3f} |")
    table = "\n".join(lines)
    stamp = "" if not (args.out / "table.md").exists() else time.strftime("-%Y%m%d-%H%M%S")  # never overwrite one
    (args.out / f"table{stamp}.md").write_text(table + "\n")
    (args.out / f"rows{stamp}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table, f"\n(written to {args.out}/table{stamp}.md and rows{stamp}.json)")


if __name__ == "__main__":
    main()
