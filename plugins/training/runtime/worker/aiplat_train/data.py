"""Reading a dataset folder and packing it into fixed-length training sequences.

Every ``*.jsonl`` and ``*.txt`` file under the folder is read, in sorted path order, so every rank
and every resumed run sees the same corpus. Formats:

- ``instruction``: JSON lines ``{"instruction", "input"?, "output"}`` (also ``prompt``/``completion``),
  rendered with an Alpaca-style prompt template;
- ``chat``: JSON lines ``{"messages": [{"role", "content"}, ...]}``, rendered role-tagged;
- ``text``: ``.txt`` lines, or JSON lines ``{"text"}``;
- ``auto``: ``.txt`` is text, a ``.jsonl`` file takes the format of its first record.

Each document is tokenized, ends with the end-of-sequence token, and all are concatenated and cut
into sequences of ``sequence_length`` tokens (the tail that does not fill one is dropped).
"""
import json
import os
import random

import torch

from .spec import SpecError

INSTRUCTION_TEMPLATE = "### Instruction:\n{instruction}\n\n{input}### Response:\n{output}"


def list_files(path):
    if os.path.isfile(path):
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(root, n) for n in names if n.endswith((".jsonl", ".txt")) and not n.startswith(".")]
    return sorted(files)


def _detect(record):
    if "messages" in record:
        return "chat"
    if "instruction" in record or "prompt" in record:
        return "instruction"
    if "text" in record:
        return "text"
    return None


def _render(record, fmt, where):
    if not isinstance(record, dict):
        raise SpecError("data", f"{where}: a record must be a JSON object")
    if fmt == "text":
        if not isinstance(record.get("text"), str):
            raise SpecError("data", f'{where}: a text record needs a string "text"')
        return record["text"]
    if fmt == "chat":
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise SpecError("data", f'{where}: a chat record needs "messages", a non-empty list')
        parts = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise SpecError("data", f'{where}: messages[{i}] needs string "role" and "content"')
            parts.append(f"<|{m['role']}|>\n{m['content']}\n")
        return "".join(parts)
    instruction = record.get("instruction", record.get("prompt"))
    output = record.get("output", record.get("completion", record.get("response")))
    if not isinstance(instruction, str) or not isinstance(output, str):
        raise SpecError("data", f'{where}: an instruction record needs string "instruction" and "output"')
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise SpecError("data", f'{where}: "input" must be a string')
    return INSTRUCTION_TEMPLATE.format(instruction=instruction, input=f"### Input:\n{extra}\n\n" if extra else "", output=output)


def read_documents(path, fmt):
    """The documents of a dataset folder as plain strings, in a fixed order."""
    files = list_files(path)
    if not files:
        raise SpecError("data.path", f"{path} holds no .jsonl or .txt files")
    docs = []
    for file in files:
        rel = os.path.relpath(file, path) if os.path.isdir(path) else os.path.basename(file)
        with open(file, encoding="utf-8", errors="replace") as f:
            if file.endswith(".txt"):
                if fmt not in ("auto", "text"):
                    raise SpecError("data.format", f"{rel} is a .txt file, which can only be text, not {fmt}")
                docs += [line.rstrip("\n") for line in f if line.strip()]
                continue
            file_fmt = None if fmt == "auto" else fmt
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{rel} line {n}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SpecError("data", f"{where}: not JSON ({e.msg})") from None
                if file_fmt is None:
                    file_fmt = _detect(record) if isinstance(record, dict) else None
                    if file_fmt is None:
                        raise SpecError("data", f'{where}: cannot tell the format (no "messages", "instruction" or "text")')
                docs.append(_render(record, file_fmt, where))
    if not docs:
        raise SpecError("data.path", f"{path} holds no records")
    return docs


def pack(docs, tokenizer, sequence_length):
    """All documents as one token stream, cut into a [n, sequence_length] tensor."""
    eos = tokenizer.eos_token_id
    stream = []
    for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        stream += ids
        stream.append(eos)
    n = len(stream) // sequence_length
    if n == 0:
        raise SpecError("hyper.sequenceLength", f"the dataset has {len(stream)} tokens, fewer than one sequence of {sequence_length}")
    return torch.tensor(stream[: n * sequence_length], dtype=torch.long).view(n, sequence_length)


def split(sequences, eval_split, seed):
    """A seeded train/eval split of the packed sequences; eval is empty when eval_split is 0."""
    order = list(range(len(sequences)))
    random.Random(seed).shuffle(order)
    n_eval = int(len(order) * eval_split)
    if eval_split > 0 and n_eval == 0 and len(order) > 1:
        n_eval = 1
    train_idx, eval_idx = order[n_eval:], order[:n_eval]
    return sequences[sorted(train_idx)], sequences[sorted(eval_idx)]
