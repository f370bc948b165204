"""Instruction tokenisation and image preprocessing for vla_tiny.

`CharTokenizer` is a transformers PreTrainedTokenizer over printable ASCII + 4 specials: it needs no download, has
no out-of-vocabulary words (new paraphrases and typos still encode), and is saved with every checkpoint
(vocab.json + tokenizer_config.json) so a policy folder is self-contained.

`VLATinyProcessor` turns instruction strings into character (or, with a pretrained text backbone, sub-word) ids
plus a *word index* per token. The model pools token states into one token per word, so the fusion transformer
sees ~6 word tokens instead of ~40 characters (cheaper on CPU) and per-token attention maps are per word
("red", "cube"), which a person can read, instead of per character.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizer

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
_WORD_RE = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks


class CharTokenizer(PreTrainedTokenizer):
    """Character-level tokenizer: ids 0-3 are [PAD] [UNK] [CLS] [SEP], then printable ASCII (space .. ~)."""

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, lowercase: bool = True, **kwargs: Any) -> None:
        if vocab_file is not None and os.path.isfile(vocab_file):
            with open(vocab_file, encoding="utf-8") as f:
                self.vocab: dict[str, int] = json.load(f)
        else:
            chars = [chr(c) for c in range(32, 127)]
            self.vocab = {tok: i for i, tok in enumerate([PAD, UNK, CLS, SEP, *chars])}
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.lowercase = lowercase
        for key, tok in (("pad_token", PAD), ("unk_token", UNK), ("cls_token", CLS), ("sep_token", SEP)):
            kwargs.setdefault(key, tok)
        super().__init__(lowercase=lowercase, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab[UNK])

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, UNK)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(t for t in tokens if t not in (PAD, CLS, SEP))

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        out = [self.cls_token_id, *token_ids_0, self.sep_token_id]
        return out + [*token_ids_1, self.sep_token_id] if token_ids_1 else out

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False, indent=0)
        return (path,)

    def ids_for_word(self, word: str) -> list[int]:
        """Fast path used by the processor (skips the generic __call__ machinery)."""
        unk = self.vocab[UNK]
        return [self.vocab.get(c, unk) for c in (word.lower() if self.lowercase else word)]


class VLATinyProcessor:
    """Instructions -> (ids, mask, word index); images -> normalised float tensors at the policy's size."""

    def __init__(self, tokenizer, *, max_len: int = 64, max_words: int = 16, cache_size: int = 256) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.max_words = max_words
        self._cache: OrderedDict[str, tuple[list[int], list[int], list[str]]] = OrderedDict()
        self._cache_size = cache_size
        vocab = tokenizer.get_vocab()
        # Character tokenizers see the spaces between words; sub-word tokenizers do not need them.
        self._space_id = vocab.get(" ") if isinstance(tokenizer, CharTokenizer) else None

    def _word_ids(self, word: str) -> list[int]:
        if isinstance(self.tokenizer, CharTokenizer):
            return self.tokenizer.ids_for_word(word)
        return list(self.tokenizer(word, add_special_tokens=False)["input_ids"])

    def _encode_one(self, text: str) -> tuple[list[int], list[int], list[str]]:
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        tok = self.tokenizer
        ids: list[int] = []
        widx: list[int] = []
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        budget = self.max_len - (start is not None) - (end is not None)
        if start is not None:
            ids.append(start)
            widx.append(-1)
        words: list[str] = []
        for w in _WORD_RE.findall(text):
            wid = self._word_ids(w)
            sep = [self._space_id] if (self._space_id is not None and words) else []
            if len(words) >= self.max_words or len(ids) - (start is not None) + len(sep) + len(wid) > budget:
                break
            ids += sep + wid
            widx += [-1] * len(sep) + [len(words)] * len(wid)
            words.append(w.lower() if getattr(tok, "lowercase", False) else w)
        if end is not None:
            ids.append(end)
            widx.append(-1)
        out = (ids, widx, words)
        self._cache[text] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def encode(self, instructions: list[str] | tuple[str, ...] | str) -> dict[str, Any]:
        """Batch-encode instructions.

        Returns: input_ids long (B, L), attention_mask long (B, L), word_index long (B, L) (-1 = not in a word:
        specials, spaces), word_mask bool (B, W) with W = the longest word count in the batch (>= 1), words
        list[list[str]].
        """
        if isinstance(instructions, str):
            instructions = [instructions]
        enc = [self._encode_one(str(t)) for t in instructions]
        B = len(enc)
        L = max(len(e[0]) for e in enc)
        W = max(1, max(len(e[2]) for e in enc))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((B, L), pad, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        widx = torch.full((B, L), -1, dtype=torch.long)
        wmask = torch.zeros((B, W), dtype=torch.bool)
        for b, (i, w, words) in enumerate(enc):
            ids[b, : len(i)] = torch.tensor(i)
            mask[b, : len(i)] = 1
            widx[b, : len(w)] = torch.tensor(w)
            wmask[b, : len(words)] = True
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "word_index": widx,
            "word_mask": wmask,
            "words": [list(e[2]) for e in enc],
        }


def to_chw_uint8(images: Any) -> torch.Tensor:
    """(B, 3, H, W) or (B, H, W, 3) (or one unbatched image) numpy/torch -> torch (B, 3, H, W), dtype kept."""
    x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"expected (B, 3, H, W) or (B, H, W, 3) images, got shape {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] != 3:
        raise ValueError(f"no channel axis of size 3 in image shape {tuple(x.shape)}")
    return x


def prepare_images(images: Any, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 1]) images, any layout/size -> float32 (B, 3, size, size), per-channel normalised.

    Resizing is bilinear with antialias (what PIL does), done after the conversion to float.
    """
    x = to_chw_uint8(images).to(mean.device)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


__all__ = ["CharTokenizer", "VLATinyProcessor", "prepare_images", "to_chw_uint8"]
