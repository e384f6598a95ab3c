"""Offline fixtures for the token-level tests: a tiny BPE tokenizer, a tiny Llama, a small deterministic env.

Nothing here downloads anything: the tokenizer is trained in-process on a few
sentences of the env's own language; the model is a randomly initialised
``LlamaForCausalLM`` with a 32-wide hidden state.
"""

from __future__ import annotations

from pathlib import Path

from mem1_gym.protocol import ANSWER, SEARCH, Turn, format_turn
from mem1_gym.turn_env import Outcome, TurnEnv

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class SecretNumberEnv(TurnEnv):
    """Find a hidden number: search reveals it (with a clue count), answering it exactly scores 1.

    Deterministic under ``reset(seed=...)``; several searches are allowed so
    episodes can run many turns.
    """

    roles = (SEARCH, ANSWER)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_turns", 6)
        super().__init__(**kwargs)
        self.secret = 0
        self.searches = 0
        self.answer_given: str | None = None

    def _new_task(self) -> str:
        self.secret = int(self.np_random.integers(10, 100))
        self.searches = 0
        self.answer_given = None
        return "Find the secret number. Search with <query> secret </query>, then answer it with <answer> the number </answer>."

    def _execute(self, turn: Turn) -> Outcome:
        if turn.role == SEARCH:
            self.searches += 1
            return Outcome(info=f"clue {self.searches}: the secret number is {self.secret}.")
        self.answer_given = turn.argument
        return Outcome(info="answer received.", reward=float(turn.argument == str(self.secret)), terminated=True)

    def _task_metrics(self) -> dict[str, float]:
        return {"em": float(self.answer_given == str(self.secret))}

    def oracle_action(self) -> str:
        if self.searches == 0:
            return format_turn("I need the secret number.", SEARCH, "secret", self.tags)
        return format_turn(f"The secret is {self.secret}.", ANSWER, str(self.secret), self.tags)


def _corpus() -> list[str]:
    env = SecretNumberEnv()
    lines = [env._new_task()]
    for n in range(10, 100):
        lines.append(f"<IS> I need the secret number. </IS><query> secret </query>")
        lines.append(f"\n<info> clue 1: the secret number is {n}. </info>\n")
        lines.append(f"<IS> The secret is {n}. </IS><answer> {n} </answer>")
    lines.append("\n<info> Invalid turn: missing internal state. answer received. </info>\n")
    return lines * 3


def build_tiny_tokenizer(with_chat_template: bool = True, vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on the env's language (any text still tokenizes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    if with_chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model_dir(path: Path, tokenizer) -> Path:
    """Save a random 2-layer, 32-wide ``LlamaForCausalLM`` (and the tokenizer) to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
