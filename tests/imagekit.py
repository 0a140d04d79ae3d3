"""Image files built byte by byte: ordinary ones in every PNG/JPEG shape, and hostile ones.

Pillow cannot write an interlaced PNG, a PNG split into thousands of chunks, a deflate stream
padded with empty blocks, or a JPEG whose scans repeat; the service must still meet them. The
PNG writer here is the specification's (filter 0 per row, zlib, CRC per chunk); JPEGs start as
Pillow's and are edited at the marker level. ``scripts/bench_api.py`` builds its corpus of
hostile requests from these too.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PNG colour types by the number of samples per pixel (gray, gray+alpha, RGB, RGBA).
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def gradient(width: int, height: int, channels: int = 1) -> npt.NDArray[np.uint8]:
    """A smooth test picture (compresses well, so large images stay small files)."""
    plane = (np.add.outer(np.arange(height), np.arange(width) * 3) % 256).astype(np.uint8)
    if channels == 1:
        return plane
    return np.stack([plane, plane + 85, 255 - plane, plane][:channels], axis=-1)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def scanlines(pixels: npt.NDArray[np.generic], interlace: bool = False) -> bytes:
    """The filtered (filter type 0) scanlines of ``pixels`` (H, W[, C]), uint8 or uint16."""
    data = np.ascontiguousarray(pixels.astype(">u2") if pixels.dtype == np.uint16 else pixels)
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    out = []
    for x0, y0, dx, dy in passes:
        part = np.ascontiguousarray(data[y0::dy, x0::dx])
        if part.size:
            rows = part.reshape(part.shape[0], -1).view(np.uint8)
            filtered = np.zeros((rows.shape[0], rows.shape[1] + 1), np.uint8)
            filtered[:, 1:] = rows
            out.append(filtered.tobytes())
    return b"".join(out)


def png(
    pixels: npt.NDArray[np.generic],
    *,
    interlace: bool = False,
    idat_chunk: int | None = None,
    stream: bytes | None = None,
    before_idat: Sequence[bytes] = (),
    after_idat: Sequence[bytes] = (),
    level: int = 6,
) -> bytes:
    """A PNG of ``pixels`` (H, W) or (H, W, C), 8- or 16-bit by dtype. ``idat_chunk`` splits the
    compressed stream into chunks of that many bytes; ``stream`` replaces it; the extra chunks
    (already built with ``png_chunk``) go before or after the pixel data."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    depth = 16 if pixels.dtype == np.uint16 else 8
    ihdr = struct.pack(
        ">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, int(interlace)
    )
    compressed = (
        stream if stream is not None else zlib.compress(scanlines(pixels, interlace), level)
    )
    step = idat_chunk or max(len(compressed), 1)
    idats = [png_chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step)]
    return b"".join(
        [
            PNG_MAGIC,
            png_chunk(b"IHDR", ihdr),
            *before_idat,
            *idats,
            *after_idat,
            png_chunk(b"IEND", b""),
        ]
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` gray pixels (one row of data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + min(width, 4096)))
    return PNG_MAGIC + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def padded_stream(raw: bytes, empty_blocks: int) -> bytes:
    """A zlib stream that inflates to ``raw`` after ``empty_blocks`` empty stored blocks: as
    long as one likes, and it inflates to no more than ``raw``."""
    compressor = zlib.compressobj()
    head = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)  # byte-aligned now
    final = b"\x01\x00\x00\xff\xff" + struct.pack(">I", zlib.adler32(raw))
    return head + b"\x00\x00\x00\xff\xff" * empty_blocks + final


def ztxt_bomb(inflated: int) -> bytes:
    """A zTXt chunk whose text inflates to ``inflated`` bytes (Pillow inflates up to 1 MB each)."""
    return png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * inflated, 9))


def jpeg(
    pixels: npt.NDArray[np.uint8],
    *,
    progressive: bool = False,
    quality: int = 90,
    mode: str | None = None,
) -> bytes:
    """A JPEG of ``pixels`` (H, W) or (H, W, 3), converted to ``mode`` (e.g. CMYK) first."""
    from PIL import Image

    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, progressive=progressive)
    return buffer.getvalue()


_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) from the first segment after SOI to EOI; a scan's bytes include its
    entropy-coded data. For well-formed files only (this builds tests, it checks nothing)."""
    segments, pos = [], 2
    while True:
        marker = data[pos + 1]
        if marker == 0xD9:
            segments.append((marker, data[pos : pos + 2]))
            return segments
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            found = _ENTROPY_END.search(data, end)
            assert found is not None
            end = found.start()
        segments.append((marker, data[pos:end]))
        pos = end


def scan_count(data: bytes) -> int:
    return sum(1 for marker, _ in jpeg_segments(data) if marker == 0xDA)


def with_scans(progressive_jpeg: bytes, scans: int, repeat: str = "first") -> bytes:
    """The JPEG with one scan (its ``first``, or its ``largest``) repeated until it has
    ``scans`` scans: libjpeg decodes a repeated scan again, with a warning, so each is another
    pass over the whole image."""
    segments = jpeg_segments(progressive_jpeg)
    indices = [i for i, (marker, _) in enumerate(segments) if marker == 0xDA]
    largest = max(indices, key=lambda i: len(segments[i][1]))
    chosen = indices[0] if repeat == "first" else largest
    have = len(indices)
    if scans < have:
        raise ValueError(f"the JPEG already has {have} scans")
    parts = [body for _, body in segments]
    repeated = [parts[chosen]] * (scans - have + 1)
    return b"\xff\xd8" + b"".join([*parts[:chosen], *repeated, *parts[chosen + 1 :]])


def with_segments(data: bytes, extra: Sequence[bytes]) -> bytes:
    """The JPEG with ``extra`` segments (marker included) right after SOI."""
    return data[:2] + b"".join(extra) + data[2:]


def comment(text: bytes) -> bytes:
    return b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text


def with_frame(data: bytes, *, marker: int | None = None, **fields: int) -> bytes:
    """The JPEG with its frame header (SOF) changed: its marker, or ``precision``, ``height``,
    ``width`` (the entropy-coded data is left as it was: only the header claims it)."""
    for kind, body in jpeg_segments(data):
        if kind in (0xC0, 0xC1, 0xC2):
            precision, height, width = struct.unpack_from(">BHH", body, 4)
            values = {"precision": precision, "height": height, "width": width, **fields}
            new = (
                bytes([0xFF, marker if marker is not None else kind])
                + body[2:4]
                + struct.pack(">BHH", values["precision"], values["height"], values["width"])
                + body[9:]
            )
            return data.replace(body, new, 1)
    raise ValueError("no frame header")
