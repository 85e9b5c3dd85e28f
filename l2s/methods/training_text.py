"""A sampled completion as a training example, in the text the trained model reads and writes at inference.

Shortest-rs (SFT) and DPO train on the long model's own samples. Handing TRL conversational rows
(`[user, assistant(completion)]`) lets the chat template re-render the completion, and real templates do
not give it back as it was generated: DeepSeek-R1-distill's template drops everything up to `</think>`
from an assistant turn and opens `<think>` in the generation prompt, so SFT would learn the bare answer
with the reasoning cut out (and TRL warns that the prompt is not a prefix); Qwen3's re-spaces the think
block. So l2s gives TRL plain-text prompt/completion rows instead:

  prompt      the trained model's chat template with the generation prompt, exactly what sampling and
              serving render (`l2s.engines.completion.render_prompt`), without the leading BOS when the
              tokenizer adds one itself (TRL tokenizes plain text with special tokens);
  completion  the text as generated; TRL appends the tokenizer's EOS, the token the engines stop on.

When the trained model's template opens `<think>` differently from the sampled model's (shortest-rs
`--student`), the completion is moved across: a think opener the student's prompt already holds is
dropped, one it lacks is added. Written by hand because neither TRL nor transformers does this.
"""

from __future__ import annotations

from typing import Any

from l2s.engines.completion import opens_think, render_prompt
from l2s.grading import THINK_CLOSE, THINK_OPEN


def open_think_suffix(prompt_text: str) -> str:
    """The end of a rendered prompt from a still-open `<think>` on ("" when the prompt opens none).

    >>> open_think_suffix("<|im_start|>assistant\\n<think>\\n"), open_think_suffix("<|im_start|>assistant\\n")
    ('<think>\\n', '')
    """
    return prompt_text[prompt_text.rfind(THINK_OPEN) :] if opens_think(prompt_text) else ""


def move_completion(completion: str, source_suffix: str, target_suffix: str) -> str:
    """A completion generated after a prompt ending in `source_suffix`, for a prompt ending in `target_suffix`.

    >>> move_completion("2\\n</think>\\nAnswer: 2", "<think>\\n", "<think>\\n")  # same template: as is
    '2\\n</think>\\nAnswer: 2'
    >>> move_completion("<think>\\n2\\n</think>\\nAnswer: 2", "", "<think>\\n")  # into an R1-style prompt
    '2\\n</think>\\nAnswer: 2'
    >>> move_completion("2\\n</think>\\nAnswer: 2", "<think>\\n", "")  # out of one
    '<think>\\n2\\n</think>\\nAnswer: 2'
    >>> move_completion("Answer: 2", "", "<think>\\n")  # no reasoning, into a prompt that opened <think>
    '</think>\\nAnswer: 2'
    """
    full = source_suffix + completion
    if not target_suffix:
        return full
    if full.startswith(target_suffix):
        return full[len(target_suffix) :]
    if full.startswith(THINK_OPEN):
        return full[len(THINK_OPEN) :].lstrip("\n")
    return f"{THINK_CLOSE}\n{full}"


class TrainingText:
    """Renders (prompt, completion) rows for TRL's plain-text prompt-completion formats.

    `tokenizer` is the trained model's; `source_tokenizer` the sampled model's, when it differs."""

    def __init__(self, tokenizer: Any, source_tokenizer: Any | None = None):
        self.tokenizer = tokenizer
        bos, ids = tokenizer.bos_token, tokenizer("x")["input_ids"]
        self._strip_bos = bos if bos and tokenizer.bos_token_id in ids[:1] else ""
        self._source = source_tokenizer

    def _render(self, tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
        """The prompt as `tokenizer`'s chat template renders it: a user turn, or whole chat messages."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return render_prompt(tokenizer, messages).text

    def prompt(self, prompt: str | list[dict[str, str]]) -> str:
        text = self._render(self.tokenizer, prompt)
        if self._strip_bos and text.startswith(self._strip_bos):
            text = text[len(self._strip_bos) :]
        return text

    def completion(self, prompt: str | list[dict[str, str]], completion: str) -> str:
        if self._source is None:  # sampled from the trained model itself: the text as generated
            return completion
        target = open_think_suffix(self._render(self.tokenizer, prompt))
        return move_completion(completion, open_think_suffix(self._render(self._source, prompt)), target)
