"""The policy being trained as a pope engine: what evaluation and guidance sample from during training.

`live_engine(model, tokenizer, seed=..., batch_size=...)` wraps the model in pope's transformers
engine without a reload or a copy; the caller puts the model in eval mode while it generates.
"""

from __future__ import annotations

from typing import Any


def live_engine(model: Any, tokenizer: Any, *, seed: int, batch_size: int) -> Any:
    """pope's transformers engine over `model` (the policy being trained, no reload, no copy)."""
    from pope_eval.engines.transformers_engine import TransformersEngine

    return TransformersEngine(
        model=str(getattr(model, "name_or_path", "policy")), model_obj=model, tokenizer=tokenizer,
        seed=seed, max_batch_size=batch_size, device=str(next(model.parameters()).device),
        dtype=str(model.dtype).replace("torch.", ""))
