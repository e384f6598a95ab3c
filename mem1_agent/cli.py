"""The ``mem1`` command line: one sub-command per module, imported only when used.

Each sub-command lives in its own module exposing ``cli(argv: list[str]) -> int``,
so ``mem1 webshop serve`` never pays for importing torch. A :class:`~mem1_agent.errors.UserError`
raised anywhere in a command (a bad model path, config key, env argument) ends it with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("mem1_agent.demo", "the main job: train SmolLM2 on the embedded QA task (SFT + PPO), then evaluate"),
    "serve-retriever": ("mem1_gym.retrieval_server", "serve a retrieval index over HTTP (Search-R1 API)"),
    "webshop": ("webshop_env.cli", "serve the WebShop site (mem1 webshop serve --port P --num-products N)"),
    "check-consistency": ("mem1_agent.consistency", "check that stitched log-probs equal rollout log-probs"),
    "train": ("mem1_agent.train", "train a MEM1 agent (sft, ppo, grpo, sft+ppo) from a YAML config"),
    "export": ("mem1_agent.export", "write a training run's policy as a plain HF model folder (LoRA adapters merged)"),
    "eval": ("mem1_agent.evaluate", "evaluate a policy over env x memory x objectives x seeds (CSV, table, plots)"),
    "serve-policy": ("mem1_agent.serve_policy", "serve an HF model as an OpenAI-compatible /v1/completions API"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mem1`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"mem1 {version('mem1-gym')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from . import __version__

            print(f"mem1 {__version__} (source tree)")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mem1 [--version] <command> [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<20} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mem1: unknown command {name!r}; run 'mem1 --help' for the list", file=sys.stderr)
        return 2
    from .errors import UserError

    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.cli(rest) or 0)
    except UserError as err:
        print(f"mem1 {name}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
