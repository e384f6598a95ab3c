"""REINFORCE with a per-task mean baseline, written over mem1_agent's public API only.

    python examples/custom_algorithm.py                      # tiny random model, toy task (seconds)
    python examples/custom_algorithm.py --model default --env qa --iterations 20 --memory summary:1

Each iteration rolls out G episodes per task (a batch of token-level envs, batched generation), stitches
them into one masked sequence per row, recomputes the action log-probs in one forward, and takes a
gradient step on ``-(R - mean_R_of_task) * sum log pi(action tokens)``. Swap the loss for your algorithm.
"""

import argparse

import torch

from mem1_agent import LMPolicy, SamplingConfig, load_policy, make_env, rollout, stitch, stitched_forward
from mem1_gym.wrappers import TokenizedEnv


def reinforce_loss(model, episodes, group: int, pad_id: int) -> torch.Tensor:
    """``-(R - baseline) * log pi(episode's actions)``, averaged over episodes; ``group`` consecutive episodes share a task."""
    rewards = torch.tensor([ep.reward for ep in episodes]).view(-1, group)
    advantages = (rewards - rewards.mean(dim=1, keepdim=True)).flatten()
    batch = stitch(episodes, pad_id, attn_implementation="sdpa")
    logprobs = stitched_forward(model, batch, with_values=False)["logprobs"]
    episode_of_token = batch.action_index[:, 0]  # every action token knows its episode
    return -(advantages[episode_of_token] * logprobs).sum() / len(episodes)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--env", default="toy", help="toy | qa | a registered id")
    p.add_argument("--memory", default="mem1")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--tasks", type=int, default=2, help="tasks per iteration")
    p.add_argument("--group", type=int, default=2, help="episodes per task (the baseline is their mean reward)")
    p.add_argument("--lr", type=float, default=1e-5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model, tok = load_policy(args.model, attn_implementation="sdpa", value_head=False)
    envs = [TokenizedEnv(make_env(args.env, memory=args.memory), tok, max_length=2048) for _ in range(4)]
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=48), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for it in range(args.iterations):
        model.eval()
        episodes, stats = rollout(envs, policy, [it * args.tasks + t for t in range(args.tasks) for _ in range(args.group)])
        model.train()
        loss = reinforce_loss(model, episodes, args.group, tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mean_reward = sum(ep.reward for ep in episodes) / len(episodes)
        print(f"iteration {it}: mean reward {mean_reward:.3f}, loss {loss.item():.4f}, {stats.tokens_per_second:.0f} tok/s")
    print(f"done: {args.iterations} iterations of REINFORCE, {args.tasks * args.group} episodes each")


if __name__ == "__main__":
    main()
