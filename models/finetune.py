"""Fine-tune a BERT (MiniLM by default) to tell movie sentences from TV-show sentences (models/data/movie_tv).

BertForSequenceClassification on the base model's encoder weights, AdamW and cross-entropy, dev accuracy per
epoch and test accuracy at the end, saved with save_pretrained as safetensors (never a pickle). Deterministic
for a seed on one machine: the classifier's initialisation, the shuffling and dropout all draw from it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import transformers

from isasim.models import registry
from isasim.models.limits import check_finite, check_seed
from isasim.isa.errors import UserError

if TYPE_CHECKING:
    from isasim.models.lora import Lora

DATA = Path(__file__).with_name("data") / "movie_tv"
LABELS = {0: "movie", 1: "tv"}
SPLITS = ("train", "dev", "test")


def load_split(split: str) -> list[dict]:
    """The split's sentences as {"text": str, "label": 0 or 1}; UserError naming the file and line of a record
    that is not one."""
    if split not in SPLITS:
        raise UserError(f"unknown dataset split '{split}': choose one of {', '.join(SPLITS)}")
    path = DATA / f"{split}.jsonl"
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not (isinstance(row, dict) and isinstance(row.get("text"), str) and row.get("label") in LABELS):
                raise ValueError("want {\"text\": a string, \"label\": 0 or 1}")
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}:{n}: not a dataset record ({e}): the dataset is damaged; reinstall isasim") \
                from None
        rows.append(row)
    return rows


def encode(texts: list[str], seq: int) -> dict[str, torch.Tensor]:
    """[CLS] text [SEP] with the bert-base-uncased vocabulary, truncated or padded to `seq` (mask 0 on pads)."""
    from isasim.models.inputs import tokenize

    rows = [tokenize(t, seq) for t in texts]
    return {"input_ids": torch.tensor([r[0] for r in rows], dtype=torch.int64),
            "attention_mask": torch.tensor([r[1] for r in rows], dtype=torch.int64),
            "token_type_ids": torch.zeros(len(rows), seq, dtype=torch.int64)}


@dataclass
class FinetuneReport:
    base: str
    seed: int
    epochs: int
    batch: int
    lr: float
    seq: int
    train_sentences: int
    epoch_loss: list[float] = field(default_factory=list)
    dev_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float = 0.0
    output: str = ""
    trained_params: int = 0  # what AdamW updated
    model_params: int = 0  # the classifier's own parameters (without LoRA's adapters)
    lora: dict | None = None  # {r, alpha, targets}; the adapter is saved in output/adapter

    def to_json(self) -> dict:
        return asdict(self)


def classifier_from(spec: registry.ModelSpec, seed: int) -> transformers.BertForSequenceClassification:
    config = transformers.BertConfig.from_dict(spec.config.to_dict())
    config.num_labels = len(LABELS)
    config.id2label = dict(LABELS)
    config.label2id = {v: k for k, v in LABELS.items()}
    config.architectures = ["BertForSequenceClassification"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(config)
    if spec.weights is not None:
        registry.load_weights(spec, model.bert)
    return model


def accuracy(model, data: dict[str, torch.Tensor], labels: torch.Tensor, batch: int) -> float:
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            logits = model(**{k: v[i:i + batch] for k, v in data.items()}).logits
            right += int((logits.argmax(-1) == labels[i:i + batch]).sum())
    return right / len(labels)


def check_output_folder(out: Path) -> None:
    """Before any training: `out` must be able to become the model's folder without harming anything there."""
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: a file is there: give a folder (new, empty, or an earlier finetune's)")
    if out.is_dir() and any(out.iterdir()) and not (out / "finetune.json").is_file():
        raise UserError(f"-o {out}: the folder holds other files: give a new or empty folder (or an earlier "
                        f"finetune's, which is replaced)")


LORA_LR = 5e-4  # LoRA's default learning rate: its adapters start at zero and need larger steps (Hu et al. 2021
#               fine-tune RoBERTa's adapters at 4e-4 to 5e-4)


def finetune(base: str, out: Path, epochs: int = 3, batch: int = 16, lr: float | None = None, seq: int = 32,
             seed: int = 0, progress: Callable[[str, int, int], None] | None = None,
             lora: "Lora | None" = None) -> FinetuneReport:
    """Fine-tune `base` on the movie/TV training split (every parameter, or with `lora` its adapters and the
    classifier head), report dev accuracy per epoch and test accuracy, and save the classifier to `out` (with
    LoRA: merged into the weights, so `check` reads it as any fine-tune; the adapter alone in out/adapter)."""
    lr = (LORA_LR if lora is not None else 2e-5) if lr is None else lr
    if epochs < 1 or batch < 1:
        raise UserError("--epochs and --batch must be 1 or more")
    check_finite("--lr", lr, 0.0, inclusive=False)
    check_seed(seed)
    check_output_folder(out)
    spec = registry.resolve(base)
    if not 2 <= seq <= spec.config.max_position_embeddings:
        raise UserError(f"--seq {seq} is out of range: {spec.name} accepts 2..{spec.config.max_position_embeddings}")
    if spec.weights is not None and not spec.has_pooler:
        raise UserError(f"{spec.name} has no pooler, which a sequence classifier needs: start from a model "
                        "saved with its pooler")
    model = classifier_from(spec, seed)
    model_params = sum(p.numel() for p in model.parameters())
    if lora is not None:
        from isasim.models.lora import wrap

        model = wrap(model, lora, seed, spec.config.hidden_size)
    splits = {s: load_split(s) for s in SPLITS}
    data = {s: encode([r["text"] for r in rows], seq) for s, rows in splits.items()}
    labels = {s: torch.tensor([r["label"] for r in rows]) for s, rows in splits.items()}
    report = FinetuneReport(base, seed, epochs, batch, lr, seq, len(splits["train"]),
                            trained_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                            model_params=model_params, lora=lora.to_json() if lora is not None else None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(labels["train"])
    steps = epochs * -(-n // batch)
    done = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, batch):
                idx = order[i:i + batch]
                out_ = model(**{k: v[idx] for k, v in data["train"].items()}, labels=labels["train"][idx])
                if not torch.isfinite(out_.loss):
                    raise UserError(f"the training loss became {out_.loss.item()} at step {done + 1}: lower --lr "
                                    f"(now {lr:g}); nothing was saved")
                opt.zero_grad()
                out_.loss.backward()
                opt.step()
                total += float(out_.loss.detach()) * len(idx)
                done += 1
                if progress:
                    progress("fine-tuning", done, steps)
            report.epoch_loss.append(total / n)
            report.dev_accuracy.append(accuracy(model, data["dev"], labels["dev"], batch))
    report.test_accuracy = accuracy(model, data["test"], labels["test"], batch)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "adapter").is_dir():  # an earlier LoRA fine-tune's adapter: not this model's
        shutil.rmtree(out / "adapter")
    if lora is not None:
        # peft's adapter_config.json and adapter_model.safetensors (the embeddings are frozen: no hub lookup
        # to ask whether they grew)
        model.save_pretrained(out / "adapter", save_embedding_layers=False)
        model = model.merge_and_unload()  # W + (alpha / r) B A, and the trained head: a plain classifier
    model.save_pretrained(out, safe_serialization=True)
    report.output = str(out)
    (out / "finetune.json").write_text(json.dumps(report.to_json(), indent=2))
    return report
