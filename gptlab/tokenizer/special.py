"""The special tokens every gptlab tokenizer carries, in id order after the learned merges.

`<|endoftext|>` delimits (and starts) documents; the chat tokens frame turns; the tool tokens frame
a tool call and its forced-in result; `<|reward|>` is where the reward model reads its scalar.
"""

from __future__ import annotations

ENDOFTEXT = "<|endoftext|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"  # end of a turn: the assistant must learn to emit it, or it never stops
TOOL_CALL = "<|tool_call|>"
TOOL_CALL_END = "<|tool_call_end|>"
TOOL_RESULT = "<|tool_result|>"
TOOL_RESULT_END = "<|tool_result_end|>"
REWARD = "<|reward|>"
PAD = "<|pad|>"

SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT, SYSTEM, USER, ASSISTANT, END,
    TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END,
    REWARD, PAD,
)
