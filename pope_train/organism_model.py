"""The model organism: a tiny Llama with a character-level tokenizer, pretrained from scratch by SFT.

`pretrain(OrganismConfig(seed=0), out)` writes an ordinary Hugging Face model folder (config.json,
model.safetensors, tokenizer with its chat template) plus pretrain.json and loss.png.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import string
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pope_data.organism import PHRASES, demonstrations
from pope_eval.errors import ConfigError, require
from pope_eval.prompts import GUIDED_INSTRUCTION, MATH_INSTRUCTION

log = logging.getLogger(__name__)

PAD, UNK, END = "<pad>", "<unk>", "<|end|>"
ROLES = ("system", "user", "assistant")
# Every printable ASCII character and the newline, one token each.
ALPHABET = tuple(string.printable[:95]) + ("\n",)
ASSISTANT = "<|assistant|>"
# The ends of pope's two prompts, each with the assistant marker that follows it, are one token:
# the last line of the problem (or of the guidance) then sits exactly one line above the first
# line of the answer, as every line sits above the next (pope_data.organism). The guided end
# starts with the newline that closes the guidance.
PROMPT_ENDS = ("\n\n" + MATH_INSTRUCTION + ASSISTANT,
               "\n\n</partial_solution>\n\n" + GUIDED_INSTRUCTION + ASSISTANT)
# pope's prompt phrases and the task's fixed words, one token each (matched before characters).
WORDS = (*PROMPT_ENDS, MATH_INSTRUCTION, GUIDED_INSTRUCTION, "<partial_solution>",
         "</partial_solution>", *PHRASES)
# User and system turns run into the next turn; an assistant turn ends with END (the EOS).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "<|assistant|>{{ message['content'] }}<|end|>"
    "{% else %}<|{{ message['role'] }}|>\n{{ message['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CONTEXT = 2048


def opchain_words() -> tuple[str, ...]:
    """The single-token words of the opchain organism (`pope_data.opchain`): the prompt ends of
    every wording its demonstrations use (`pope`, `no-revisit`, `continue`: the last line given
    sits one token above the first line of the answer under each), the instructions and the
    task's phrases."""
    from pope_data.opchain import PHRASES as OPCHAIN_PHRASES
    from pope_eval.prompts import GUIDANCE

    no_revisit = GUIDANCE["no-revisit"].instruction
    cont = GUIDANCE["continue"].instruction
    ends = (*PROMPT_ENDS, "\n\n</partial_solution>\n\n" + no_revisit + ASSISTANT,
            "\n" + ASSISTANT, "\n\n" + cont + "\n\n")
    return (*ends, MATH_INSTRUCTION, GUIDED_INSTRUCTION, no_revisit, cont, "<partial_solution>",
            "</partial_solution>", *OPCHAIN_PHRASES)


def build_tokenizer(words: Sequence[str] = WORDS):
    """A character-level tokenizer (`tokenizers` BPE without merges) with `words` (default: pope's
    prompt phrases and the organism task's) as single tokens, special role tokens and the chat
    template, as a PreTrainedTokenizerFast."""
    tokenizers = require("tokenizers", "hf")
    transformers = require("transformers", "hf")
    specials = [PAD, UNK, END, *(f"<|{r}|>" for r in ROLES)]
    vocab = {tok: i for i, tok in enumerate([*specials, *ALPHABET])}
    model = tokenizers.models.BPE(vocab=vocab, merges=[], unk_token=UNK)
    tok = tokenizers.Tokenizer(model)
    tok.decoder = tokenizers.decoders.Fuse()
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False)
                            for s in specials])
    tok.add_tokens([tokenizers.AddedToken(w, special=False, normalized=False) for w in words])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=END,
        chat_template=CHAT_TEMPLATE, model_max_length=CONTEXT)


@dataclass(frozen=True)
class OrganismConfig:
    """Architecture, pretraining data and optimisation of one organism (all of it in pretrain.json)."""

    seed: int = 0
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 512
    examples: int = 60_000
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    guided_fraction: float = 0.3
    restate: bool = True
    max_steps: int = 3000
    batch_size: int = 8  # packed rows of `pack_length` tokens per step
    pack_length: int = 1024
    rope_theta: float = 500.0  # short-range positions: each line reads the line above it
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    log_every: int = 50  # steps between loss-curve points
    threads: int = 2
    # Steps after which the model is also saved to out/snapshots/step-N (a plain model folder
    # each), so that one pretraining can be checked at several lengths; the final model is saved
    # to out as always.
    snapshots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("hidden_size", "layers", "heads", "intermediate_size", "examples",
                     "max_steps", "batch_size", "pack_length", "log_every", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of heads "
                              f"{self.heads}")
        if self.pack_length > CONTEXT:
            raise ConfigError(f"pack_length: at most the context {CONTEXT}, got {self.pack_length}")
        if any(not 1 <= n < self.max_steps for n in self.snapshots) or \
                len(set(self.snapshots)) != len(self.snapshots):
            raise ConfigError(f"snapshots: distinct steps in 1..{self.max_steps - 1} (the final "
                              f"model is saved anyway), got {list(self.snapshots)}")


def model_config(cfg: OrganismConfig, tokenizer) -> Any:
    """A LlamaConfig (the architecture vLLM and transformers both load) for the tokenizer."""
    transformers = require("transformers", "hf")
    return transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=CONTEXT, rope_theta=cfg.rope_theta, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None)


SNAPSHOTS = "snapshots"  # pretrain's out/snapshots/step-N folders (OrganismConfig.snapshots)


def _save_model(model: Any, tokenizer: Any, transformers: Any, out: Path) -> None:
    """The model in eval mode with its generation config, and the tokenizer, as a model folder."""
    model.eval()
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out, save_jinja_files=False)


def _loss_plot(curve: Sequence[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def conversation_ids(tokenizer, demo: Any) -> tuple[list[int], int]:
    """A demonstration through the chat template: (the conversation's token ids, how many of them
    are the prompt with its generation marker); refused unless the prompt tokenizes as a prefix
    of the conversation."""
    prompt = tokenizer.apply_chat_template(demo.prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*demo.prompt, *demo.completion], tokenize=False)
    a = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    b = tokenizer(full, add_special_tokens=False)["input_ids"]
    if b[:len(a)] != a:
        raise ConfigError("organism tokenizer: the prompt does not tokenize as a prefix of "
                          "the conversation")
    return b, len(a)


def pack(tokenizer, demos: Sequence[Any], length: int) -> tuple[Any, Any]:
    """The demonstrations as chat-template text, concatenated and cut into rows of `length`
    tokens: (ids, loss mask), the mask 1 on the assistant turns (their END included) only."""
    torch = require("torch", "hf")
    ids: list[int] = []
    mask: list[int] = []
    for d in demos:
        b, prompt_len = conversation_ids(tokenizer, d)
        ids += b
        mask += [0] * prompt_len + [1] * (len(b) - prompt_len)
    rows = len(ids) // length
    if rows < 1:
        raise ConfigError(f"organism pretraining: {len(ids)} tokens make no row of {length}")
    return (torch.tensor(ids[:rows * length]).view(rows, length),
            torch.tensor(mask[:rows * length]).view(rows, length))


def pretrain(cfg: OrganismConfig, out: str | os.PathLike, progress: Any = None, *,
             demos: Sequence[Any] | None = None, words: Sequence[str] = WORDS,
             generator: str = "pope_data.organism.demonstrations") -> dict[str, Any]:
    """Generate the demonstrations, train a fresh model on them by supervised fine-tuning (the
    conversations packed into `pack_length`-token rows, cross-entropy on the assistant turns only,
    AdamW with warm-up and cosine decay, rows drawn with the seed), save the model folder to
    `out` and the record (data, seed, loss curve, wall time) to out/pretrain.json.

    The loop is our own rather than TRL's SFTTrainer, which on CPU turns on gradient checkpointing
    and bf16 autocast by default: measured here on this model, 0.56 s a step against SFTTrainer's
    0.68 s (bench/RESULTS.md).

    Another task family passes its own `demos` (objects with prompt, completion, difficulty and
    shown), the tokenizer's `words` and the `generator` recorded in pretrain.json; its config's
    `difficulties` then only name the difficulties counted in the record."""
    torch = require("torch", "hf")
    transformers = require("transformers", "hf")
    import math

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: not an empty folder")
    started = time.monotonic()
    torch.set_num_threads(cfg.threads)
    transformers.set_seed(cfg.seed)
    tokenizer = build_tokenizer(words)
    model = transformers.LlamaForCausalLM(model_config(cfg, tokenizer))
    params = sum(p.numel() for p in model.parameters())
    if demos is None:
        demos = demonstrations(cfg.examples, seed=cfg.seed, difficulties=cfg.difficulties,
                               guided_fraction=cfg.guided_fraction, restate=cfg.restate)
    x_all, m_all = pack(tokenizer, demos, cfg.pack_length)
    log.info("organism: %d parameters, %d demonstrations in %d rows, %d steps", params,
             len(demos), len(x_all), cfg.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01,
                            betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    curve: list[dict[str, float]] = []
    window: list[float] = []
    model.train()
    for step in range(1, cfg.max_steps + 1):
        warm = min(1.0, step / cfg.warmup_steps)
        lr = cfg.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * (step - 1) / cfg.max_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)
        x, m = x_all[idx], m_all[idx]
        logits = model(input_ids=x).logits[:, :-1]
        target = x[:, 1:].clone()
        target[m[:, 1:] == 0] = -100
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        window.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            curve.append({"step": step, "loss": sum(window) / len(window), "lr": lr})
            window = []
            log.info("step %d/%d: loss %.4f", step, cfg.max_steps, curve[-1]["loss"])
            if progress:
                progress(step, cfg.max_steps, curve[-1]["loss"])
        if step in cfg.snapshots:
            _save_model(model, tokenizer, transformers, out / SNAPSHOTS / f"step-{step}")
            model.train()
    wall = time.monotonic() - started
    _save_model(model, tokenizer, transformers, out)
    shown = [d.shown for d in demos]
    record = {
        "config": asdict(cfg),
        "parameters": params,
        "vocab_size": len(tokenizer),
        "demonstrations": {"count": len(demos), "guided": sum(1 for s in shown if s),
                           "per_difficulty": {str(d): sum(1 for x in demos if x.difficulty == d)
                                              for d in cfg.difficulties},
                           "rows": len(x_all),
                           "generator": generator},
        "tokens_seen": cfg.max_steps * cfg.batch_size * cfg.pack_length,
        "loss_curve": curve,
        "final_loss": curve[-1]["loss"] if curve else None,
        "wall_s": round(wall, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "threads": cfg.threads},
    }
    (out / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
    _loss_plot(curve, out / "loss.png",
               f"organism pretraining ({params / 1e6:.2f}M params, seed {cfg.seed})")
    return record


@dataclass(frozen=True)
class RegimeConfig:
    """The regime check of an organism: unguided pass rates over k samples per difficulty, and
    guided ones over n samples at every prefix length of each solution."""

    difficulties: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 10, 12)
    guided_difficulties: tuple[int, ...] = (8, 10, 12)
    problems: int = 8
    k: int = 64
    n: int = 8
    max_tokens: int = 640
    temperature: float = 1.0
    seed: int = 0


def _rates(graded: Sequence[Any]) -> dict[str, Any]:
    correct = [g.correct for g in graded]
    samples = sum(len(g.grades) for g in graded)
    statuses: dict[str, int] = {}
    for g in graded:
        for s in g.statuses:
            statuses[s] = statuses.get(s, 0) + 1
    return {"samples": samples, "correct": sum(correct),
            "pass_rate": sum(correct) / samples if samples else 0.0,
            "problems_solved": sum(1 for c in correct if c), "problems": len(graded),
            "statuses": statuses}


def regime_check(model: str, cfg: RegimeConfig, progress: Any = None, *,
                 generate: Any = None, wordings: Sequence[str] = ("pope",)) -> dict[str, Any]:
    """Measure the organism through pope's transformers engine and grading on
    `generate_organism(cfg.problems, seed=cfg.seed, difficulty=d)`: per difficulty the unguided
    pass rate over k samples per problem, and for `guided_difficulties` the guided pass rate over
    n samples at each prefix length i = 1..d (pope's guided prompt, `steps` segments).

    Another family passes its `generate(count, seed=, difficulty=)`; the guided prefixes then run
    over every line but the answer line, once per guidance template in `wordings` (results under
    "guided" for `pope`, "guided:<wording>" for the others)."""
    from pope_data.organism import generate_organism
    from pope_data.segments import segment
    from pope_eval.engines import EngineConfig, GenerationRequest, Sampling, make_engine
    from pope_eval.prompts import GUIDANCE, guided_messages, problem_messages
    from pope_eval.scoring import generate_and_grade

    engine = make_engine(EngineConfig(engine="transformers", model=model, seed=cfg.seed))
    sampling = Sampling(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=1.0,
                        seed=cfg.seed)
    out: dict[str, Any] = {"config": asdict(cfg), "model": str(model), "unguided": {},
                           "guided": {}}
    try:
        for d in sorted(set(cfg.difficulties) | set(cfg.guided_difficulties)):
            problems = (generate or generate_organism)(cfg.problems, seed=cfg.seed, difficulty=d)
            golds = [p.answer for p in problems]
            started = time.monotonic()
            if d in cfg.difficulties:
                reqs = [GenerationRequest(messages=tuple(problem_messages(p.problem)), n=cfg.k,
                                          sampling=sampling, seed=i, tag=p.id)
                        for i, p in enumerate(problems)]
                graded = generate_and_grade(engine, reqs, golds)
                out["unguided"][str(d)] = {
                    **_rates(graded), "wall_s": round(time.monotonic() - started, 1),
                    "per_problem": [g.correct for g in graded]}
                if progress:
                    progress(f"difficulty {d}: unguided {out['unguided'][str(d)]['correct']} of "
                             f"{out['unguided'][str(d)]['samples']}")
            if d not in cfg.guided_difficulties:
                continue
            last = d if generate is None else len(segment(problems[0].solution, "steps")) - 1
            for wording in wordings:
                key = "guided" if wording == "pope" else f"guided:{wording}"
                rows = {}
                for i in range(1, last + 1):
                    started = time.monotonic()
                    reqs = [GenerationRequest(
                        messages=tuple(guided_messages(
                            p.problem, segment(p.solution, "steps").prefix(i),
                            guidance=GUIDANCE[wording])),
                        n=cfg.n, sampling=sampling, seed=1000 * i + j, tag=p.id)
                        for j, p in enumerate(problems)]
                    graded = generate_and_grade(engine, reqs, golds)
                    rows[str(i)] = {**_rates(graded),
                                    "wall_s": round(time.monotonic() - started, 1),
                                    "per_problem": [g.correct for g in graded]}
                    if progress:
                        progress(f"difficulty {d}, {wording}, prefix {i}: guided "
                                 f"{rows[str(i)]['correct']} of {rows[str(i)]['samples']}")
                out.setdefault(key, {})[str(d)] = rows
    finally:
        engine.close()
    return out
