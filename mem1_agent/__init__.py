"""The MEM1 agent: LLM policies, rollout, stitched masked trajectories, PPO/GRPO/SFT trainers, evaluation."""
