"""The SFT stage of `sft_then_rl` on TRL: `SFTTrainer` on pope_train.sft's examples, saved as a plain model folder.

`run_sft(settings, data, model_path, progress)` writes OUT/sft/train.parquet and sft/metrics.jsonl,
fine-tunes, and returns OUT/sft/final: the model GRPO then starts from (`backend.sft_settings`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pope_train.backends.trl.metrics import MetricsWriter
from pope_train.sft import SftData, write_sft_data

log = logging.getLogger(__name__)

SFT_DIR = "sft"  # under the run folder: train.parquet, metrics.jsonl, final/
SFT_FIELDS = ("loss", "learning_rate", "grad_norm", "num_tokens", "mean_token_accuracy")

SftProgress = Callable[[int, int, float | None], None]  # (step done, steps in all, loss)


def _callback(writer: MetricsWriter, progress: SftProgress | None):
    from transformers import TrainerCallback

    class SftMetrics(TrainerCallback):
        """One sft/metrics.jsonl record per SFT step ({"sft_step", loss, ...}), reported."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return  # the end-of-training summary
            record = {"sft_step": state.global_step,
                      **{key: logs.get(key) for key in SFT_FIELDS}}
            writer.write(record)
            if progress is not None:
                progress(state.global_step, state.max_steps, record["loss"])

    return SftMetrics()


def run_sft(settings: dict[str, Any], data: SftData, model_path: str,
            progress: SftProgress | None = None) -> Path:
    """Supervised fine-tuning of `model_path` on `data` (loss on the completions only) with
    SFTConfig(**settings); returns the saved model folder, settings["output_dir"]/final."""
    import datasets
    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    folder = Path(settings["output_dir"])
    path = write_sft_data(data, folder / "train.parquet")
    dataset = datasets.load_dataset("parquet", data_files=str(path), split="train")
    dataset = dataset.select_columns(["prompt", "completion"])  # TRL's prompt-completion format
    trainer = SFTTrainer(model=model_path, args=SFTConfig(**settings), train_dataset=dataset,
                         callbacks=[_callback(MetricsWriter(folder / "metrics.jsonl"), progress)])
    trainer.remove_callback(PrinterCallback)  # the CLI owns the console
    log.info("TRL SFT: %s for %d steps", data.line(), settings["max_steps"])
    trainer.train()
    final = folder / "final"
    trainer.save_model(str(final))
    # GRPO loads its own copy next: free this one's weights and optimizer state first.
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return final
