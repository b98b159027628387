"""transformers backend: padded batches with a KV cache and per-request seeded sampling (CPU default).

Built by `make_engine(EngineConfig(engine="transformers", model=...))`; samples are reproducible per
request seed whatever else shares the batch (the prefix-search resume relies on it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from pope_eval.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Sample,
    sample_seed,
)
from pope_eval.engines.registry import register_engine
from pope_eval.errors import ConfigError, require
from pope_eval.models import resolve_model
from pope_eval.options import option
from pope_eval.prompts import render

log = logging.getLogger(__name__)


@dataclass
class _Seq:
    """One sample being generated."""

    req: int
    index: int
    prompt_ids: list[int]
    generator: Any
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None
    text: str = ""


@dataclass(frozen=True)
class TransformersOptions:
    """The transformers backend's own options."""

    max_batch_size: int = option(64, "transformers: sequences per padded batch.",
                                 flag="--batch-size", operational=True)

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) \
                or self.max_batch_size < 1:
            raise ConfigError(f"--batch-size: must be >= 1, got {self.max_batch_size}")


@register_engine("transformers", options=TransformersOptions)
@dataclass
class TransformersEngine(Engine):
    """Sampling loop over a causal LM in fp32 on CPU (bf16 on GPU when dtype=auto)."""

    model_obj: Any = None
    tokenizer: Any = None
    seed: int = 0
    max_batch_size: int = 64
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.name = "transformers"
        # Padded batches behind the stream: one batch per poll, graded while the next runs.
        self.stream_chunk = self.max_batch_size

    @classmethod
    def from_config(cls, config) -> TransformersEngine:
        torch = require("torch", "hf")
        transformers = require("transformers", "hf")
        resolved = resolve_model(config.model, config.cache_dir)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if config.dtype == "auto":
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
        else:
            dtype = getattr(torch, config.dtype)
        if device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        tok = transformers.AutoTokenizer.from_pretrained(resolved.path)
        model = transformers.AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
        model.to(device).eval()
        return cls(model=config.model, model_obj=model, tokenizer=tok, seed=config.seed,
                   max_batch_size=config.max_batch_size, device=device,
                   dtype=str(model.dtype).replace("torch.", ""))

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "device": self.device,
                "dtype": self.dtype}

    # -- generation -------------------------------------------------------------------------
    def _prompt_ids(self, r: GenerationRequest) -> list[int]:
        text = r.prompt if r.prompt is not None else render(r.messages, self.tokenizer)
        # Chat templates already hold the special tokens; do not add a second BOS.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _eos_ids(self) -> set[int]:
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model_obj.generation_config,
                                                             "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list | tuple):
                ids.update(source)
        return ids

    def _generate(self, requests: list[GenerationRequest],
                  progress: ProgressFn | None) -> list[GenerationResult]:
        torch = require("torch", "hf")
        prompt_ids = [self._prompt_ids(r) for r in requests]
        seqs = [
            _Seq(req=i, index=j, prompt_ids=prompt_ids[i],
                 generator=torch.Generator().manual_seed(
                     sample_seed(self.seed, r.seed, r.sample_offset + j)))
            for i, r in enumerate(requests)
            for j in range(r.n)
        ]
        # Similar prompt lengths together: less padding.
        order = sorted(seqs, key=lambda s: (len(s.prompt_ids), s.req, s.index))
        done_requests: set[int] = set()
        remaining = {i: r.n for i, r in enumerate(requests)}
        tokens_so_far = 0
        for start in range(0, len(order), self.max_batch_size):
            batch = order[start : start + self.max_batch_size]
            self._run_batch(batch, requests, torch)
            for s in batch:
                tokens_so_far += len(s.tokens)
                remaining[s.req] -= 1
                if remaining[s.req] == 0:
                    done_requests.add(s.req)
            if progress:
                progress(len(done_requests), tokens_so_far)
        results = []
        for i, r in enumerate(requests):
            mine = sorted((s for s in seqs if s.req == i), key=lambda s: s.index)
            results.append(GenerationResult(
                request=r,
                samples=tuple(Sample(text=s.text, tokens=len(s.tokens), finish_reason=s.finish)
                              for s in mine),
                prompt_tokens=len(prompt_ids[i]),
            ))
        return results

    def _run_batch(self, batch: list[_Seq], requests: list[GenerationRequest], torch) -> None:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(self._eos_ids()), 0)
        eos = self._eos_ids()
        width = max(len(s.prompt_ids) for s in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, s in enumerate(batch):
            ids[row, width - len(s.prompt_ids):] = torch.tensor(s.prompt_ids)
            mask[row, width - len(s.prompt_ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        max_new = max(requests[s.req].sampling.max_tokens for s in batch)
        live = list(range(len(batch)))  # rows of `batch` still generating, in cache order
        cache = None
        inputs = ids.to(self.device)
        attn = mask.to(self.device)
        pos = positions.to(self.device)
        with torch.inference_mode():
            for _step in range(max_new):
                # Only the last position's logits: the prefill of a long batch would otherwise
                # hold (batch x prompt x vocabulary) floats.
                out = self.model_obj(input_ids=inputs, attention_mask=attn, position_ids=pos,
                                     past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float().cpu()
                rows = [batch[row] for row in live]
                picked = _pick_batch(logits, [requests[q.req] for q in rows],
                                     [q.generator for q in rows], torch)
                next_tokens = []
                keep = []
                for k, (s, tok) in enumerate(zip(rows, picked)):
                    r = requests[s.req]
                    next_tokens.append(tok)
                    if tok in eos:
                        s.finish = "stop"
                    else:
                        s.tokens.append(tok)
                        if r.sampling.stop and self._hit_stop(s, r.sampling.stop):
                            s.finish = "stop"
                        elif len(s.tokens) >= r.sampling.max_tokens:
                            s.finish = "length"
                    if s.finish is None:
                        keep.append(k)
                if not keep:
                    break
                if len(keep) < len(live):
                    # Drop finished rows from the cache: later steps only pay for live ones.
                    idx = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(idx)
                    attn = attn[idx]
                    pos = pos[idx]
                    live = [live[k] for k in keep]
                    next_tokens = [next_tokens[k] for k in keep]
                inputs = torch.tensor(next_tokens, device=self.device).unsqueeze(-1)
                attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=-1)
                pos = pos[:, -1:] + 1
        for s in batch:
            if s.finish is None:  # max_tokens reached on the last step
                s.finish = "length"
            if not s.text:
                s.text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)

    def _hit_stop(self, s: _Seq, stops: tuple[str, ...]) -> bool:
        # Decode only the tail that can hold a newly completed stop string.
        tail_tokens = max(len(x) for x in stops) + 8
        tail = self.tokenizer.decode(s.tokens[-tail_tokens:], skip_special_tokens=True)
        if not any(x in tail for x in stops):
            return False
        text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
        cut = min(text.find(x) for x in stops if x in text)
        s.text = text[:cut]
        return True

    def close(self) -> None:
        self.model_obj = None


def _pick_batch(logits, reqs: list[GenerationRequest], generators: list, torch) -> list[int]:
    """Next token per row: greedy at temperature 0, else top-p / top-k / min-p sampling by inverse
    CDF with the row's own generator. Row-wise operations only, so a row's draw never depends on its batch."""
    out = [0] * len(reqs)
    greedy = [k for k, r in enumerate(reqs) if r.sampling.temperature == 0]
    sampled = [k for k, r in enumerate(reqs) if r.sampling.temperature != 0]
    if greedy:
        arg = torch.argmax(logits[greedy], dim=-1).tolist()
        for k, tok in zip(greedy, arg):
            out[k] = tok
    if sampled:
        temps = torch.tensor([reqs[k].sampling.temperature for k in sampled], dtype=logits.dtype)
        probs = torch.softmax(logits[sampled] / temps[:, None], dim=-1)
        top_p = torch.tensor([reqs[k].sampling.top_p for k in sampled], dtype=logits.dtype)
        # Sorting the whole vocabulary per step dominates small models: sort the top 1024
        # candidates, and the full row only where those do not reach top_p (exact either way).
        sorted_p, sorted_ix = torch.topk(probs, min(1024, probs.shape[-1]), dim=-1)
        short = (sorted_p.sum(-1) < top_p).nonzero().flatten().tolist()
        if short:
            sorted_p, sorted_ix = torch.sort(probs, dim=-1, descending=True)
        cum = sorted_p.cumsum(-1)
        # Keep the smallest prefix of the sorted vocabulary whose mass reaches top_p, cut to the
        # top_k most likely tokens and to those at least min_p times as likely as the best one.
        # Each rule keeps a prefix of the sorted row, so their intersection is one too.
        keep = (cum - sorted_p) < top_p[:, None]
        top_k = torch.tensor([reqs[k].sampling.top_k or sorted_p.shape[-1] for k in sampled])
        keep &= torch.arange(sorted_p.shape[-1])[None, :] < top_k[:, None]
        min_p = torch.tensor([reqs[k].sampling.min_p or 0.0 for k in sampled], dtype=logits.dtype)
        keep &= sorted_p >= (min_p * sorted_p[:, 0])[:, None]
        kept_mass = torch.where(keep, sorted_p, torch.zeros_like(sorted_p)).sum(-1)
        u = torch.stack([torch.rand((), generator=generators[k]) for k in sampled]) * kept_mass
        n_keep = keep.sum(-1)
        idx = torch.searchsorted(cum, u[:, None]).squeeze(-1)
        idx = torch.minimum(idx, n_keep - 1)
        toks = sorted_ix.gather(-1, idx[:, None]).squeeze(-1).tolist()
        for k, tok in zip(sampled, toks):
            out[k] = tok
    return out
