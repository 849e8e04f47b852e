"""LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021) through Hugging Face `peft`:
each targeted linear layer W x + b becomes W x + b + (alpha / r) B (A x), with W and b frozen and only the
rank-r matrices A [r, K] and B [N, r] trained, together with the classifier head (peft's `modules_to_save`
for a sequence classifier). peft starts B at zero, so the adapted model begins as the base one.

What it changes in a fine-tuning step (models/training.py): the forward gains two thin matmuls and a scaled
add per targeted layer; the backward still carries every input gradient through the frozen layers (the
adapters of layer 1 need the gradient that flows back through layers 2..L), but computes no weight gradient
for a frozen weight; AdamW updates only the adapters and the head. So the step saves the weight-gradient
GEMMs and most of the optimizer, far less than the ratio of trainable parameters suggests.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from isasim.isa.errors import UserError

TARGETS = ("query", "value")  # the LoRA paper's choice for attention, and peft's default for BERT
LINEARS = ("query", "key", "value", "dense")  # the names of BERT's linear layers (dense: every other one)


@dataclass(frozen=True)
class Lora:
    r: int
    alpha: float
    targets: tuple[str, ...] = TARGETS
    identity_start: bool = True  # peft's B = 0; False: B random too, so a test sees every gradient non-zero

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_json(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "targets": list(self.targets)}


def lora(r: int, alpha: float | None = None, targets: str | tuple[str, ...] | None = None) -> Lora:
    """A checked LoRA configuration from the command line's --lora, --lora-alpha and --lora-targets (alpha
    defaults to 2 r, a common choice that makes the update's scale 2)."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise UserError(f"--lora {r} is out of range: give the adapters' rank, 1 or more (8 is common)")
    alpha = 2.0 * r if alpha is None else alpha
    if not (isinstance(alpha, (int, float)) and alpha > 0 and alpha == alpha and alpha != float("inf")):
        raise UserError(f"--lora-alpha {alpha} is out of range: give a positive number (default 2 x rank)")
    names = tuple(t.strip() for t in targets.split(",")) if isinstance(targets, str) else (targets or TARGETS)
    unknown = [t for t in names if t not in LINEARS]
    if not names or unknown:
        raise UserError(f"--lora-targets {','.join(names)}: {', '.join(unknown) or 'nothing'} is not one of BERT's "
                        f"linear layers: choose from {', '.join(LINEARS)}, comma-separated")
    return Lora(r, float(alpha), tuple(dict.fromkeys(names)))


def wrap(model: torch.nn.Module, spec: Lora, seed: int, hidden: int) -> torch.nn.Module:
    """`model` (a BertForSequenceClassification of width `hidden`) with LoRA adapters, A initialised from
    `seed` (peft draws it from torch's global generator, so the same seed gives the same adapters in every
    process)."""
    import peft

    if spec.r > hidden:  # every BERT linear layer is at least `hidden` wide on one side
        raise UserError(f"--lora {spec.r} is above the model's hidden size {hidden}: a rank that high is no "
                        f"low-rank adapter; use at most {hidden} (8 is common)")
    config = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=list(spec.targets), lora_dropout=0.0,
                             task_type=peft.TaskType.SEQ_CLS, init_lora_weights=spec.identity_start)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft asks transformers a question transformers 5 has renamed (is_gradient_checkpointing): not ours to fix
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        torch.manual_seed(seed)
        return peft.get_peft_model(model, config)


def trainable(model: torch.nn.Module) -> int:
    """The parameters a fine-tuning run updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
