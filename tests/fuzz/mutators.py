"""Seeded byte- and text-level mutators: one random change to a valid input per call.

Byte mutators are the classic ones (bit flip, interesting byte, truncation, insertion, deletion,
duplication, a large integer written over the data) because headers keep sizes and offsets as
integers. Text mutators replace a number with a hostile token (out of float32 range, denormal,
Unicode digits, '+5', '1_000', nan) or insert a character that `str.splitlines` would treat as a
line break.
"""

from __future__ import annotations

import numpy as np

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_INTS = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, 10**9)
HOSTILE_NUMBERS = ("1e39", "-1e39", "1e-320", "1e308", "nan", "inf", "-inf", "+5", "1_000", "٣", "１", "0x10", "",
                   "1e", ".", "-", "5e-324", "3.4028236e38", "1" * 400, "--1", "1.2.3")
LINE_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\r\n")


def flip_bit(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    position = int(rng.integers(len(data)))
    return data[:position] + bytes([data[position] ^ (1 << int(rng.integers(8)))]) + data[position + 1:]


def set_byte(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    position = int(rng.integers(len(data)))
    return data[:position] + bytes([INTERESTING_BYTES[rng.integers(len(INTERESTING_BYTES))]]) + data[position + 1:]


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[:int(rng.integers(len(data) + 1))]


def insert_random(data: bytes, rng: np.random.Generator) -> bytes:
    position = int(rng.integers(len(data) + 1))
    return data[:position] + rng.bytes(int(rng.integers(1, 17))) + data[position:]


def delete_range(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    start = int(rng.integers(len(data)))
    return data[:start] + data[start + int(rng.integers(1, 33)):]


def duplicate_range(data: bytes, rng: np.random.Generator) -> bytes:
    if not data:
        return data
    start = int(rng.integers(len(data)))
    return data[:start] + data[start:start + int(rng.integers(1, 65))] + data[start:]


def overwrite_int(data: bytes, rng: np.random.Generator) -> bytes:
    """A large integer (4 or 8 bytes, either byte order) written over the data: sizes and offsets."""
    width = 4 if rng.random() < 0.5 else 8
    if len(data) < width:
        return data
    value = INTERESTING_INTS[rng.integers(len(INTERESTING_INTS))] % 2 ** (8 * width)
    raw = value.to_bytes(width, "little" if rng.random() < 0.5 else "big")
    position = int(rng.integers(len(data) - width + 1))
    return data[:position] + raw + data[position + width:]


BYTE_MUTATORS = (flip_bit, set_byte, truncate, insert_random, delete_range, duplicate_range, overwrite_int)


def mutate_bytes(data: bytes, rng: np.random.Generator, rounds: int | None = None) -> tuple[bytes, str]:
    """1-3 random byte mutations; returns (data, label naming them)."""
    rounds = int(rng.integers(1, 4)) if rounds is None else rounds
    names = []
    for _ in range(rounds):
        mutator = BYTE_MUTATORS[rng.integers(len(BYTE_MUTATORS))]
        data = mutator(data, rng)
        names.append(mutator.__name__)
    return data, "+".join(names)


def replace_token(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """One whitespace-separated token replaced by a hostile number."""
    lines = text.split("\n")
    row = int(rng.integers(len(lines)))
    tokens = lines[row].split(" ")
    column = int(rng.integers(len(tokens)))
    token = HOSTILE_NUMBERS[rng.integers(len(HOSTILE_NUMBERS))]
    tokens[column] = token
    lines[row] = " ".join(tokens)
    return "\n".join(lines), f"token {token!r}"


def insert_line_break(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """A character that `str.splitlines` splits on, inserted anywhere."""
    position = int(rng.integers(len(text) + 1))
    brk = LINE_BREAKS[rng.integers(len(LINE_BREAKS))]
    return text[:position] + brk + text[position:], f"break {brk!r}"


def mutate_text(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """A hostile token, a strange line break, or a byte-level change decoded back as text."""
    choice = rng.integers(3)
    if choice == 0:
        return replace_token(text, rng)
    if choice == 1:
        return insert_line_break(text, rng)
    data, label = mutate_bytes(text.encode(), rng)
    return data.decode("utf-8", "replace"), label
