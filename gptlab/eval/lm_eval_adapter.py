"""A gptlab model inside EleutherAI's lm-evaluation-harness (lm-eval 0.4.x), as model "gptlab".

    lm_eval --model gptlab --model_args pretrained=runs/tiny/base,device=cpu --tasks hellaswag \\
        --include_path gptlab_tasks/   # after `import gptlab.eval.lm_eval_adapter` registers it

    from gptlab.eval.lm_eval_adapter import GptlabLM
    lm_eval.simple_evaluate(model=GptlabLM("runs/tiny/base"), tasks=[...])

The harness asks three questions of a model; each maps onto our own code:
- `loglikelihood(context, continuation)`: the summed log-probability of the continuation and
  whether greedy decoding would have produced it (multiple choice and cloze tasks);
- `loglikelihood_rolling(text)`: the log-probability of a whole text, every token scored once
  (perplexity tasks), via `gptlab.eval.bpb.bits_per_byte`'s disjoint windows;
- `generate_until(context, until=...)`: a greedy reply cut at the first stop string, from the
  inference `Engine` (KV cache, batched).
Text is plain (as the harness sends it to base models) and starts with `<|endoftext|>`, the
document boundary the model was pretrained with; context is cut from the left to fit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from gptlab.eval.bpb import bits_per_byte
from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference


@register_model("gptlab")
class GptlabLM(LM):
    def __init__(self, pretrained: str | Path, device: str = "cpu", batch_size: int | str = 16,
                 max_gen_toks: int = 64, tokenizer: str | Path | None = None, **_: object):
        super().__init__()
        self.model, self.tok = load_for_inference(pretrained, device, tokenizer)
        self.max_len = self.model.config.max_seq_len
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.max_gen_toks = int(max_gen_toks)
        self._dev = next(self.model.parameters()).device

    @property
    def tokenizer_name(self) -> str:
        return str(self.tok.path or "gptlab")

    # ------------------------------------------------------------------ log-likelihoods
    @torch.inference_mode()
    def _score(self, context: str, continuation: str) -> tuple[float, bool]:
        ctx = [self.tok.eot_id] + self.tok.encode(context)
        cont = self.tok.encode(continuation)
        if not cont:
            return 0.0, True
        seq = (ctx + cont)[-(self.max_len + 1) :]  # the input drops the last token
        n = min(len(cont), len(seq) - 1)
        x = torch.tensor([seq[:-1]], device=self._dev)
        logp = torch.log_softmax(self.model(x).float()[0, -n:], dim=-1)
        target = torch.tensor(seq[-n:], device=self._dev)
        ll = float(logp.gather(1, target[:, None]).sum())
        greedy = bool((logp.argmax(-1) == target).all())
        return ll, greedy

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        return [self._score(*req.args) for req in requests]

    def loglikelihood_rolling(self, requests) -> list[float]:
        out = []
        for req in requests:
            ids = [self.tok.eot_id] + self.tok.encode(req.args[0])
            if len(ids) < 2:
                out.append(0.0)
                continue
            r = bits_per_byte(self.model, ids, self.tok.token_byte_lengths(), batch_size=self.batch_size)
            out.append(-r["nats_per_token"] * r["tokens"])
        return out

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests) -> list[str]:
        engine = Engine(self.model, eos_ids={self.tok.eot_id}, max_batch=self.batch_size)
        out = []
        for req in requests:
            context, kw = req.args
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kw.get("max_gen_toks", self.max_gen_toks))
            prompt = ([self.tok.eot_id] + self.tok.encode(context))[-(self.max_len - max_new - 1) :]
            ids = engine.generate_all([prompt], max_new, temperature=0.0)[0]
            text = self.tok.decode([i for i in ids if not self.tok.is_special(i)])
            for stop in until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(text)
        return out
