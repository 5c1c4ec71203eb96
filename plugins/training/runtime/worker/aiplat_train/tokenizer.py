"""Tokenizers: the one the spec names, the base model's own, or a byte-level one built here.

The byte-level tokenizer needs nothing downloaded: ids 0-255 are the bytes, then ``<s>``, ``</s>``
and ``<pad>``. It is a real Hugging Face fast tokenizer (a BPE with no merges over the byte
alphabet), saved with every checkpoint and the final model, so ``AutoTokenizer`` loads it.
"""
import os

from .spec import SpecError

SPECIALS = ["<s>", "</s>", "<pad>"]


def byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    # ByteLevel maps each byte to one printable character; list them in byte order so id == byte.
    alphabet = ByteLevel.alphabet()
    by_byte = _bytes_to_unicode()
    assert sorted(alphabet) == sorted(by_byte.values())
    vocab = {by_byte[b]: b for b in range(256)}
    for i, tok in enumerate(SPECIALS):
        vocab[tok] = 256 + i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=1 << 30
    )


def _bytes_to_unicode():
    """GPT-2's byte-to-character table, the one the ByteLevel pre-tokenizer uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _has_tokenizer(folder):
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def load_tokenizer(spec, resume_dir=None):
    """The tokenizer for this run: a resumed checkpoint's, the spec's, the base model's, else bytes."""
    from transformers import AutoTokenizer

    folder = None
    if resume_dir and _has_tokenizer(resume_dir):
        folder = resume_dir
    elif spec.tokenizer:
        if not _has_tokenizer(spec.tokenizer):
            raise SpecError("tokenizer", f"{spec.tokenizer} holds no tokenizer files")
        folder = spec.tokenizer
    elif spec.model["from"] == "folder" and _has_tokenizer(spec.model["path"]):
        folder = spec.model["path"]
    if folder is None:
        return byte_level_tokenizer()
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.eos_token is None:
        raise SpecError("tokenizer", f"the tokenizer in {folder} has no end-of-sequence token")
    if tok.pad_token is None:
        # Sequences are packed to full length, so padding is only named, never used in a batch.
        tok.pad_token = tok.eos_token
    return tok
