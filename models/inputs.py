"""Model inputs: seeded random token ids, or a text tokenized with the bert-base-uncased vocabulary."""

from __future__ import annotations

from functools import cache

import torch

from isasim.isa.errors import UserError


def check_shape(config, seq: int, batch: int, name: str = "the model") -> None:
    limit = int(config.max_position_embeddings)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= limit:
        raise UserError(f"--seq {seq} is out of range: {name} accepts 1..{limit}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise UserError(f"--batch {batch} is out of range: use 1 or more")


def make_inputs(
    config, seq: int, batch: int, text: str | None = None, seed: int = 0, name: str = "the model"
) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and token_type_ids, each [batch, seq].

    With `text`: [CLS] text [SEP], truncated or padded to `seq` (mask 0 on padding), the same row repeated
    `batch` times. Without: ids drawn uniformly from [0, vocab_size) by a generator seeded with `seed`.
    """
    check_shape(config, seq, batch, name)
    vocab = int(config.vocab_size)
    if text is None:
        gen = torch.Generator().manual_seed(int(seed))
        ids = torch.randint(0, vocab, (batch, seq), generator=gen, dtype=torch.int64)
        mask = torch.ones(batch, seq, dtype=torch.int64)
    else:
        row, row_mask = tokenize(text, seq)
        too_big = [i for i in row if i >= vocab]
        if too_big:
            raise UserError(
                f"--text needs the bert-base-uncased vocabulary (30522 tokens) but {name} has {vocab}: "
                "drop --text to use random ids"
            )
        ids = torch.tensor([row] * batch, dtype=torch.int64)
        mask = torch.tensor([row_mask] * batch, dtype=torch.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(batch, seq, dtype=torch.int64)}


@cache
def _tokenizer():
    from transformers import BertTokenizer

    from isasim.models.registry import vocab_file

    return BertTokenizer(str(vocab_file()), do_lower_case=True)


def tokens(text: str) -> list[str]:
    """The text as the model reads it: [CLS], its WordPiece tokens (bert-base-uncased), [SEP]."""
    tok = _tokenizer()
    return [tok.cls_token] + tok.tokenize(text) + [tok.sep_token]


def tokenize(text: str, seq: int) -> tuple[list[int], list[int]]:
    tok = _tokenizer()
    # Built by hand: the tokenizer's own truncation cannot go below its two special tokens (seq 1).
    body = tok.convert_tokens_to_ids(tok.tokenize(text))
    ids = ([tok.cls_token_id] + body[: max(seq - 2, 0)] + [tok.sep_token_id])[:seq]
    mask = [1] * len(ids) + [0] * (seq - len(ids))
    return ids + [tok.pad_token_id] * (seq - len(ids)), mask
