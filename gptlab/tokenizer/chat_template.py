"""The Jinja chat template saved in tokenizer_config.json: Hugging Face's `apply_chat_template`
renders with it the same text (so the same ids) as `gptlab.tokenizer.chat.render_conversation`.

Its own module, so the Hugging Face writer (`hf_export`) needs only this text, not the renderer.
"""

from __future__ import annotations

# Whitespace control (`{%-`, `-%}`) on every tag: the template itself adds no characters, so the
# rendered string is exactly the concatenation of tokens and texts. Role tokens are literals (not
# '<|' + role + '|>') so `apply_chat_template(sanitize_control_tokens=True)` can tell template
# tokens from user text. `{% generation %}` marks what the mask covers, so Hugging Face's
# `return_assistant_tokens_mask=True` gives our loss mask.
_TEMPLATE = """\
{{- '<|endoftext|>' -}}
{%- for message in messages -%}
  {%- if message['role'] == 'system' -%}{{- '<|system|>' -}}
  {%- elif message['role'] == 'user' -%}{{- '<|user|>' -}}
  {%- elif message['role'] == 'assistant' -%}{{- '<|assistant|>' -}}
  {%- else -%}{{- raise_exception('unknown role: ' + message['role']) -}}
  {%- endif -%}
  {%- if message['content'] is string -%}
    {%- set parts = [{'type': 'text', 'text': message['content']}] -%}
  {%- else -%}
    {%- set parts = message['content'] -%}
  {%- endif -%}
  {%- for part in parts -%}
    {%- if part['type'] == 'tool_result' -%}
      {{- '<|tool_result|>' + part['text'] + '<|tool_result_end|>' -}}
    {%- elif part['type'] == 'tool_call' -%}
      {%- generation -%}
        {{- '<|tool_call|>' + part['text'] + '<|tool_call_end|>' -}}
      {%- endgeneration -%}
    {%- elif message['role'] == 'assistant' -%}
      {%- generation -%}{{- part['text'] -}}{%- endgeneration -%}
    {%- else -%}
      {{- part['text'] -}}
    {%- endif -%}
  {%- endfor -%}
  {%- if message['role'] == 'assistant' -%}
    {%- generation -%}{{- '<|end|>' -}}{%- endgeneration -%}
  {%- else -%}
    {{- '<|end|>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}
"""


def chat_template() -> str:
    """The Jinja chat template that renders the same text as `render_conversation`
    (`add_generation_prompt=True` matches `render_prompt`); saved in tokenizer_config.json."""
    return _TEMPLATE
