#!/usr/bin/env python
"""Mutation fuzzer for modelformat.header.inspect_checkpoint.

The check's contract: for any bytes, it returns a CheckedCheckpoint or raises InvalidCheckpoint,
quickly. Anything else (another exception, a slow input) is a crash. Inputs come from valid LeNet
checkpoints mutated at the byte, JSON-token and header-structure level (mostly inside the header,
where the parsing happens), from pickles and zips, and from random bytes. Every accepted input is
also loaded with safetensors.numpy and must agree with what the check reported (differential check).

    python scripts/fuzz_checkpoint_header.py [N=1000000] [--seed S] [--crash-dir DIR]

Prints the number of inputs, crashes, acceptances, the rate and the slowest input; exits 1 if
anything crashed. The recursion limit is raised as web3's dependencies raise it in the server, so
a parser that recurses on hostile nesting kills this process (exit 139) rather than hiding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from modelformat.header import CheckedCheckpoint, inspect_checkpoint
from modelformat.spec import ModelSpec
from registry.errors import InvalidCheckpoint

# One input slower than this counts as a crash (a DoS in waiting). A hostile 1 MiB header costs
# ~50-100 ms (json.loads plus the depth check); a real LeNet header well under 1 ms. Measured in
# CPU time of this thread: on a shared machine, wall time also counts the scheduler (a 90 ms input
# once took 302 ms of wall time while other processes held the core).
SLOW_SECONDS = 0.25


def lenet_checkpoint(c: int, size: int, k: int, seed: int) -> bytes:
    """A valid seed file, built with the product's own spec (tests/lenetkit.py is the oracle)."""
    spec = ModelSpec(
        in_channels=c,
        input_size=size,
        num_classes=k,
        class_names=tuple(f"c{i}" for i in range(k)),
        mean=(0.5,) * c,
        std=(0.25,) * c,
        dataset="fuzz",
    )
    rng = np.random.default_rng(seed)
    arrays = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, (_dtype, shape) in spec.tensor_specs().items()
    }
    meta = spec.to_metadata()
    # safetensors writes __metadata__ in hash-map order, which changes from one process to the
    # next: rewrite the header with sorted keys so that --seed reproduces a run exactly.
    header, body = split(safetensors.numpy.save(arrays, metadata=meta))
    text = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
    return assemble(text + b" " * (-len(text) % 8), body)


def split(data: bytes) -> tuple[bytes, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 : 8 + n], data[8 + n :]


def assemble(header: bytes, body: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + body


class Mutator:
    def __init__(self, seeds: list[bytes], rng: random.Random) -> None:
        self.seeds = seeds
        self.rng = rng
        self.parsed = [split(s) for s in seeds]
        self.ops: list[Callable[[], bytes]] = [
            self.random_bytes,
            self.header_byte_edits,
            self.header_byte_edits,
            self.header_byte_edits,
            self.token_edit,
            self.token_edit,
            self.structural,
            self.structural,
            self.structural,
            self.length_prefix,
            self.truncate_or_extend,
            self.data_byte_edits,
            self.splice,
            self.foreign_format,
        ]

    def pick(self) -> tuple[bytes, bytes]:
        return self.rng.choice(self.parsed)

    def __call__(self) -> bytes:
        return self.rng.choice(self.ops)()

    def random_bytes(self) -> bytes:
        r = self.rng
        n = r.choice((r.randrange(16), r.randrange(256), r.randrange(4096)))
        data = bytearray(r.randbytes(n))
        if n >= 9 and r.random() < 0.5:  # a plausible prefix gets the parser past the framing
            data[:8] = struct.pack("<Q", r.randrange(n - 7))
            data[8] = ord("{")
        return bytes(data)

    def header_byte_edits(self) -> bytes:
        header, body = self.pick()
        h = bytearray(header)
        for _ in range(self.rng.choice((1, 1, 2, 3, 8))):
            i = self.rng.randrange(len(h))
            choice = self.rng.random()
            if choice < 0.4:
                h[i] ^= 1 << self.rng.randrange(8)
            elif choice < 0.7:
                h[i] = self.rng.choice(b'{}[]",:0123456789-.eE \\\x00\xff')
            elif choice < 0.85:
                del h[i]
            else:
                h.insert(i, self.rng.randrange(256))
        keep_length = self.rng.random() < 0.8
        data = assemble(bytes(h), body)
        if not keep_length:
            data = struct.pack("<Q", len(header)) + data[8:]
        return data

    def token_edit(self) -> bytes:
        """Change one number in the header to a nearby or extreme value."""
        header, body = self.pick()
        text = header.decode()
        positions = [i for i, ch in enumerate(text) if ch.isdigit() and not text[i - 1].isdigit()]
        i = self.rng.choice(positions)
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        value = int(text[i:j])
        new = self.rng.choice(
            [
                value + 1,
                value - 1,
                value + 4,
                value - 4,
                0,
                -value,
                2**63,
                2**64,
                10**30,
                value * 2,
            ]
        )
        return assemble((text[:i] + str(new) + text[j:]).encode(), body)

    def structural(self) -> bytes:
        header, body = self.pick()
        h: dict[str, Any] = json.loads(header)
        r = self.rng
        names = [n for n in h if n != "__metadata__"]
        name = r.choice(names)
        op = r.randrange(15)
        if op == 0:
            del h[name]
        elif op == 1:
            h[f"extra{r.randrange(100)}"] = dict(h[name])
        elif op == 2:
            h[name]["dtype"] = r.choice(["F16", "F64", "I32", "BF16", "U8", "F32", "X", 4])
        elif op == 3:
            h[name]["shape"] = r.choice([[], [0], [1], h[name]["shape"][::-1], [-1], [1.5], None])
        elif op == 4:
            a, b = h[name]["data_offsets"]
            d = r.choice([-8, -4, -1, 1, 4, 8])
            h[name]["data_offsets"] = r.choice([[a + d, b + d], [a, b + d], [a + d, b], [b, a]])
        elif op == 5:
            other = r.choice(names)
            h[name]["data_offsets"], h[other]["data_offsets"] = (
                h[other]["data_offsets"],
                h[name]["data_offsets"],
            )
        elif op == 6:
            del h[name][r.choice(["dtype", "shape", "data_offsets"])]
        elif op == 7:
            h[name]["extra"] = 1
        elif op == 8:
            meta = h["__metadata__"]
            key = r.choice(list(meta))
            meta[key] = r.choice(
                [
                    "",
                    "0",
                    "1",
                    "3",
                    "-1",
                    "x" * 300,
                    "[]",
                    "{}",
                    "[" * 5000 + "]" * 5000,
                    '{"mean":[' + "9" * 400 + '],"std":[0.5]}',
                    '{"mean":[NaN],"std":[0.5]}',
                    json.dumps(["a"] * 5),
                    "lenet5",
                    "pt",
                    "\x00",
                ]
            )
        elif op == 9:
            meta = h["__metadata__"]
            if r.random() < 0.5:
                del meta[r.choice(list(meta))]
            else:
                meta[r.choice(["extra", "Format", ""])] = "x"
        elif op == 10:
            h["__metadata__"] = r.choice([None, [], "x", 1, {"a": 1}, {"a": {"b": "c"}}])
        elif op == 11:
            del h["__metadata__"]
        elif op == 12:
            # Duplicate a key textually: json.dumps cannot express it.
            raw = json.dumps(h)
            dup = json.dumps({name: h[name]})[1:-1]
            return assemble((raw[:-1] + "," + dup + "}").encode(), body)
        elif op == 13:
            for n in names:
                h[n]["data_offsets"] = [o + 4 for o in h[n]["data_offsets"]]
            body = b"\0" * 4 + body
        else:
            # Deep nesting somewhere in the header: the parser must not recurse into it.
            depth = r.choice([7, 8, 9, 50, 5000, 200_000])
            open_, close = r.choice([("[", "]"), ('{"k":', "}")])
            raw = json.dumps(h)
            i = raw.index(":", r.randrange(len(raw) // 2)) + 1
            nested = open_ * depth + "0" + close * r.choice([depth, depth - 1])
            return assemble((raw[:i] + nested + "," + raw[i:]).encode()[: 1 << 20], body)
        return assemble(json.dumps(h).encode(), body)

    def length_prefix(self) -> bytes:
        header, body = self.pick()
        r = self.rng
        n = r.choice(
            [len(header) + r.randint(-16, 16), 0, 1, 2**64 - 1, 2**63, (1 << 20) + 1, 1 << 20]
        )
        return struct.pack("<Q", n % 2**64) + header + body

    def truncate_or_extend(self) -> bytes:
        data = self.rng.choice(self.seeds)
        if self.rng.random() < 0.5:
            return data[: self.rng.randrange(len(data))]
        return data + self.rng.randbytes(self.rng.choice((1, 4, 100)))

    def data_byte_edits(self) -> bytes:
        data = bytearray(self.rng.choice(self.seeds))
        for _ in range(self.rng.randint(1, 4)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return bytes(data)

    def splice(self) -> bytes:
        a, b = self.rng.choice(self.seeds), self.rng.choice(self.seeds)
        i, j = self.rng.randrange(len(a)), self.rng.randrange(len(b))
        return a[:i] + b[j:]

    def foreign_format(self) -> bytes:
        r = self.rng
        obj: object = r.choice([None, 1, "x", [1.0] * r.randrange(50), {"w": b"\0" * 16}])
        data = pickle.dumps(obj, protocol=r.randrange(pickle.HIGHEST_PROTOCOL + 1))
        if r.random() < 0.3:
            data = b"PK\x03\x04" + r.randbytes(r.randrange(64))
        if r.random() < 0.3:
            i = r.randrange(len(data))
            data = data[:i] + bytes([r.randrange(256)]) + data[i + 1 :]
        return data


def agrees_with_loader(data: bytes, checked: CheckedCheckpoint) -> str | None:
    loaded = safetensors.numpy.load(data)
    if set(loaded) != set(checked.tensors):
        return f"tensor names differ: {sorted(set(loaded) ^ set(checked.tensors))}"
    for name, array in loaded.items():
        entry = checked.tensors[name]
        start, end = entry.data_offsets
        if array.shape != entry.shape:
            return f"{name}: loader shape {array.shape}, check {entry.shape}"
        if data[checked.data_start + start : checked.data_start + end] != array.tobytes():
            return f"{name}: loader bytes differ from the check's offsets"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=float, default=1e6, help="inputs (default 1e6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--crash-dir", type=Path, default=None, help="save crashing inputs here (default: don't)"
    )
    args = parser.parse_args(argv)
    n = int(args.n)
    # Fuzz under the conditions of the server process, which imports web3: its dependencies raise
    # the recursion limit to 100 000, so a recursing parser overflows the C stack and dies there.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    rng = random.Random(args.seed)
    seeds = [
        lenet_checkpoint(1, 28, 10, 0),
        lenet_checkpoint(3, 28, 9, 1),
        lenet_checkpoint(1, 16, 2, 2),
    ]
    for seed in seeds:
        inspect_checkpoint(seed)  # the corpus itself must pass
    mutate = Mutator(seeds, rng)

    crashes: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    accepted = 0
    slowest = (0.0, b"")
    examples: dict[str, bytes] = {}
    started = time.perf_counter()
    for i in range(n):
        data = mutate()
        t0 = time.thread_time()
        try:
            checked = inspect_checkpoint(data)
        except InvalidCheckpoint as exc:
            problems[getattr(exc, "problem", exc.code)] += 1
            checked = None
        except Exception as exc:  # the fuzzer's job: anything else is a finding
            key = f"{type(exc).__name__}: {str(exc)[:120]}"
            if key not in examples:
                examples[key] = data
                traceback.print_exc()
            crashes[key] += 1
            checked = None
        elapsed = time.thread_time() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if elapsed > SLOW_SECONDS:
            crashes[f"slow input ({elapsed * 1000:.0f} ms)"] += 1
            examples.setdefault(f"slow input ({elapsed * 1000:.0f} ms)", data)
        if checked is not None:
            accepted += 1
            try:
                disagreement = agrees_with_loader(data, checked)
            except Exception as exc:  # the loader refused what the check accepted
                disagreement = f"safetensors refused an accepted file: {exc}"
            if disagreement:
                crashes[f"differential: {disagreement[:120]}"] += 1
                examples.setdefault(f"differential: {disagreement[:120]}", data)
        if (i + 1) % max(1, n // 10) == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(
                f"  {i + 1} inputs, {sum(crashes.values())} crashes, {rate:.0f}/s", file=sys.stderr
            )

    seconds = time.perf_counter() - started
    total_crashes = sum(crashes.values())
    print(f"inputs:    {n}")
    print(f"crashes:   {total_crashes}")
    print(f"accepted:  {accepted} (each loaded by safetensors and compared)")
    print(f"rejected:  {sum(problems.values())}")
    print(f"rate:      {n / seconds:.0f} inputs/s ({seconds:.1f} s)")
    print(f"slowest:   {slowest[0] * 1000:.2f} ms of CPU ({len(slowest[1])} bytes)")
    print("rejections by problem: " + ", ".join(f"{k}={v}" for k, v in problems.most_common()))
    for key, count in crashes.most_common():
        print(f"CRASH x{count}: {key}")
    if args.crash_dir and examples:
        args.crash_dir.mkdir(parents=True, exist_ok=True)
        for data in examples.values():
            (args.crash_dir / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
