"""Small BERTs for tests, and the command line run as a test sees it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import transformers

from isasim.cli.main import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`isasim ARGV`: its exit status, standard output and standard error."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def save_bert(folder: Path, seed: int, **config) -> Path:
    """A local Hugging Face folder with seeded safetensors weights of a BertModel of this configuration."""
    import torch

    torch.manual_seed(seed)
    transformers.BertModel(transformers.BertConfig(**config)).save_pretrained(folder, safe_serialization=True)
    return folder


def capture_bert(seq: int, **config):
    """A BERT of this configuration (bert-base's seeded weights otherwise), captured with values at `seq`."""
    from isasim.models import capture, registry

    cfg = transformers.BertConfig(attn_implementation="eager", **config)
    spec = dataclasses.replace(registry.resolve("bert-base"), config=cfg, name="tiny")
    return capture.capture(spec, seq, 1, with_values=True)
