"""What an uploaded image's bytes claim, read without a decoder: the service's check before Pillow.

A decoder's cost is set by an image's structure, not by its size in bytes: a 100 KB progressive
JPEG whose scans repeat, or a PNG whose header claims 100 000 x 100 000 pixels, costs seconds of
CPU. So every upload is walked here first, in Python at the cost of reading its bytes once, and
refused from its structure (413 for what is over a limit, 400 for what is malformed) before any
decoder runs (pixels, sides, and the shapes below); the pixel counts it returns are what the
request's budget is charged.

- **PNG**: the chunks are walked (order, CRCs, the critical ones), the compressed pixel data is
  bounded by what its pixels can need, and the decoder gets the image rebuilt from its critical
  chunks only (IHDR, PLTE, tRNS, one IDAT, IEND). The pixels are the same; ancillary chunks
  Pillow would inflate (zTXt, iTXt, iCCP), animation frames and thousands of tiny chunks never
  reach it.
- **JPEG**: the marker segments are walked (entropy-coded data skipped with one C-level search
  per scan); scans (SOS) are counted and more than ``max_jpeg_scans`` refused; only 8-bit
  baseline, extended and progressive Huffman coding, in one frame of 1, 3 or 4 components, is
  accepted (what Pillow decodes, and what cameras, scanners and image tools write).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from registry.config import Settings
from registry.errors import InvalidImage, PayloadTooLarge

PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC: Final = b"\xff\xd8\xff"

# Decoders and Pillow's conversions work row by row: a 1 x 16 777 216 PNG is within the pixel
# limit but costs 60 times a 4096 x 4096 gray one (measured). No side may be longer than four times that of the
# largest square image the default pixel limit allows.
MAX_IMAGE_SIDE: Final = 16384
# libpng writes 8 KiB IDAT chunks, so a 4 MiB PNG has about 512; a Python walk of 4096 chunks
# costs about a millisecond, of the 350 000 that 4 MiB of empty chunks could hold, a second.
MAX_PNG_CHUNKS: Final = 4096
# A JPEG has a handful of segments per scan (tables, the scan header) plus its APPn metadata
# (ICC profiles and extended XMP in 64 KiB pieces): 1024 is far beyond any encoder's output.
MAX_JPEG_SEGMENTS: Final = 1024

# PNG colour type -> (samples per pixel, allowed bit depths), from the PNG specification.
_PNG_TYPES: Final = {
    0: (1, (1, 2, 4, 8, 16)),
    2: (3, (8, 16)),
    3: (1, (1, 2, 4, 8)),
    4: (2, (8, 16)),
    6: (4, (8, 16)),
}
# The seven Adam7 passes of an interlaced PNG: (x0, y0, dx, dy).
_ADAM7: Final = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# The chunks the decoder is given besides IHDR, IDAT and IEND: they change pixel values.
_KEPT_CHUNKS: Final = (b"PLTE", b"tRNS")

_SOF_ACCEPTED: Final = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_SOF_REFUSED: Final = {
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical progressive",
    0xC7: "hierarchical lossless",
    0xC9: "arithmetic-coded",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "hierarchical arithmetic-coded",
    0xCE: "hierarchical arithmetic-coded progressive",
    0xCF: "hierarchical arithmetic-coded lossless",
}
_SOS: Final = 0xDA
_EOI: Final = 0xD9
# A marker: one or more 0xFF (fill bytes) and a byte that is not 0xFF. Linear: the greedy run
# can never give back an 0xFF to the byte after it.
_MARKER: Final = re.compile(rb"\xff+([^\xff])")
# The end of entropy-coded data: 0xFF followed by neither a stuffed zero nor a restart marker
# (nor another 0xFF: the last one of a fill run starts the marker).
_ENTROPY_END: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class ImageLimits:
    """What one image may be: bytes, pixels (width x height as its header states), JPEG scans."""

    max_bytes: int
    max_pixels: int
    max_jpeg_scans: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels, settings.max_jpeg_scans)


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed the structural checks: ``data`` is what the decoder gets (a PNG
    rebuilt from its critical chunks, a JPEG as it came)."""

    kind: str  # "png" or "jpeg"
    width: int
    height: int
    data: bytes

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def check_image(data: bytes, limits: ImageLimits) -> CheckedImage:
    """Refuse ``data`` from its structure alone, or say what the decoder may safely be given."""
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge("image", len(data), limits.max_bytes)
    kind = sniff(data)
    if kind is None:
        raise InvalidImage(
            f"the upload is not a PNG or JPEG image (it starts with {data[:8]!r}); "
            "send a PNG or JPEG file, or pixel arrays as JSON",
            first_bytes=data[:8].hex(),
        )
    return _check_png(data, limits) if kind == "png" else _check_jpeg(data, limits)


def _malformed(kind: str, problem: str, **details: object) -> InvalidImage:
    return InvalidImage(
        f"the {kind} image is malformed: {problem}; re-save it with an ordinary image tool",
        problem=problem,
        **details,
    )


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            "image pixel count",
            width * height,
            limits.max_pixels,
            unit="pixels",
            advice=f"the header states {width} x {height}; send a smaller image (the model "
            "needs few pixels) or raise REGISTRY_MAX_IMAGE_PIXELS",
        )
    if max(width, height) > MAX_IMAGE_SIDE:
        raise PayloadTooLarge(
            "image side",
            max(width, height),
            MAX_IMAGE_SIDE,
            unit="pixels",
            advice=f"the header states {width} x {height}; crop or scale the image down",
        )


# --- PNG ---------------------------------------------------------------------------------------


def _check_png(data: bytes, limits: ImageLimits) -> CheckedImage:
    view = memoryview(data)
    pos, count = len(PNG_MAGIC), 0
    header: bytes | None = None
    kept: list[memoryview] = []
    idat: list[memoryview] = []
    idat_closed = False
    while True:
        if pos + 12 > len(data):
            raise _malformed("PNG", "it ends before its IEND chunk (truncated)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _malformed("PNG", f"chunk {kind!r} runs past the end of the file (truncated)")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise _malformed("PNG", f"chunk {kind!r} at offset {pos} fails its CRC check")
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise _malformed(
                "PNG", f"it has more than {MAX_PNG_CHUNKS} chunks", limit=MAX_PNG_CHUNKS
            )
        body = view[pos + 8 : end - 4]
        if count == 1:
            if kind != b"IHDR" or length != 13:
                raise _malformed("PNG", "its first chunk is not a 13-byte IHDR")
            header = bytes(view[pos:end])
            width, height = _check_ihdr(bytes(body), limits)
        elif kind == b"IDAT":
            if idat_closed:
                raise _malformed("PNG", "its IDAT chunks are not consecutive")
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind == b"IHDR":
            raise _malformed("PNG", "it has a second IHDR chunk")
        elif kind in _KEPT_CHUNKS:
            if idat:
                raise _malformed("PNG", f"its {kind.decode()} chunk comes after the pixel data")
            kept.append(view[pos:end])
        elif kind[0] & 0x20 == 0:  # upper-case first letter: critical, must be understood
            raise _malformed("PNG", f"it has a critical chunk {kind!r} no decoder knows")
        idat_closed = idat_closed or bool(idat and kind != b"IDAT")
        pos = end
    assert header is not None
    return _rebuilt_png(header, kept, idat, width, height)


def _check_ihdr(ihdr: bytes, limits: ImageLimits) -> tuple[int, int]:
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr
    )
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _malformed("PNG", f"its header states {width} x {height} pixels")
    _check_pixels(width, height, limits)
    if colour not in _PNG_TYPES or depth not in _PNG_TYPES[colour][1]:
        raise _malformed("PNG", f"colour type {colour} with bit depth {depth} does not exist")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise _malformed(
            "PNG", f"unknown compression {compression}, filter {filtering} or interlace {interlace}"
        )
    return width, height


def _raw_size(ihdr: bytes) -> int:
    """Bytes of filtered scanlines the IHDR's image decompresses to."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    bits = depth * _PNG_TYPES[colour][0]
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            total += rows * (1 + -(-(columns * bits) // 8))
    return total


def _rebuilt_png(
    header: bytes, kept: list[memoryview], idat: list[memoryview], width: int, height: int
) -> CheckedImage:
    if not idat:
        raise _malformed("PNG", "it has no IDAT (pixel data) chunk")
    compressed = b"".join(idat)
    raw = _raw_size(header[8:21])
    # Deflate's worst case (stored blocks) adds 5 bytes per block and 6 per stream; a stream far
    # longer than that inflates to nothing the image uses and only costs the decoder time.
    bound = raw + raw // 64 + 1024
    if len(compressed) > bound:
        raise _malformed(
            "PNG",
            f"it holds {len(compressed)} bytes of compressed pixel data where its "
            f"{width} x {height} pixels need at most {bound}",
            size=len(compressed),
            limit=bound,
        )
    if header[17] == 3 and not any(bytes(chunk[4:8]) == b"PLTE" for chunk in kept):
        raise _malformed("PNG", "it is a palette image without a PLTE chunk")
    data = b"".join(
        [
            PNG_MAGIC,
            header,
            *kept,
            _png_chunk(b"IDAT", compressed),
            _png_chunk(b"IEND", b""),
        ]
    )
    return CheckedImage("png", width, height, data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# --- JPEG --------------------------------------------------------------------------------------


def _check_jpeg(data: bytes, limits: ImageLimits) -> CheckedImage:
    pos, segments, scans = 2, 0, 0
    frame: tuple[int, int] | None = None
    while True:
        found = _MARKER.match(data, pos)
        if found is None or found.group(1) == b"\x00":
            where = "it ends before its end-of-image marker (truncated)"
            if found is not None or pos < len(data):
                where = f"no marker where one must start (offset {pos})"
            raise _malformed("JPEG", where)
        marker, pos = found.group(1)[0], found.end()
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _malformed(
                "JPEG", f"it has more than {MAX_JPEG_SEGMENTS} segments", limit=MAX_JPEG_SEGMENTS
            )
        if marker == _EOI:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length, no payload
            continue
        if marker == 0xD8:
            raise _malformed("JPEG", "it has a second start-of-image marker")
        if pos + 2 > len(data):
            raise _malformed("JPEG", "it ends inside a segment (truncated)")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > len(data):
            raise _malformed("JPEG", f"segment 0x{marker:02X} runs past the end (truncated)")
        payload = data[pos + 2 : pos + length]
        pos += length
        if marker in _SOF_REFUSED:
            raise InvalidImage(
                f"the JPEG is {_SOF_REFUSED[marker]} (SOF 0x{marker:02X}), a coding this "
                "service does not decode; re-save it as an ordinary (baseline or progressive) "
                "JPEG or as PNG",
                problem="unsupported JPEG coding",
                coding=_SOF_REFUSED[marker],
            )
        if marker in _SOF_ACCEPTED:
            if frame is not None:
                raise _malformed("JPEG", "it has more than one frame header (SOF)")
            frame = _check_sof(payload, limits)
        elif marker == _SOS:
            if frame is None:
                raise _malformed("JPEG", "a scan comes before the frame header (SOF)")
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise PayloadTooLarge(
                    "JPEG scan count",
                    scans,
                    limits.max_jpeg_scans,
                    unit="scans",
                    advice="every scan is another pass of the decoder over the whole image; "
                    "re-save it as a baseline JPEG or PNG, or raise REGISTRY_MAX_JPEG_SCANS",
                )
            entropy_end = _ENTROPY_END.search(data, pos)
            if entropy_end is None:
                raise _malformed("JPEG", "it ends inside a scan (truncated)")
            pos = entropy_end.start()
    if frame is None or scans == 0:
        raise _malformed("JPEG", "it has no frame header or no scan")
    return CheckedImage("jpeg", frame[0], frame[1], data)


def _check_sof(payload: bytes, limits: ImageLimits) -> tuple[int, int]:
    if len(payload) < 6:
        raise _malformed("JPEG", "its frame header (SOF) is too short")
    precision, height, width, components = struct.unpack_from(">BHHB", payload)
    if precision != 8:
        raise InvalidImage(
            f"the JPEG has {precision}-bit samples; this service decodes 8-bit JPEGs: re-save "
            "it as an 8-bit JPEG or a 16-bit PNG",
            problem="unsupported JPEG precision",
            precision=precision,
        )
    if width == 0 or height == 0:
        raise _malformed("JPEG", f"its frame header states {width} x {height} pixels")
    _check_pixels(width, height, limits)
    if components not in (1, 3, 4) or len(payload) != 6 + 3 * components:
        raise _malformed("JPEG", f"its frame header has {components} components")
    for index in range(components):
        sampling = payload[6 + 3 * index + 1]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 0x0F <= 4):
            raise _malformed("JPEG", f"component {index} has sampling factors 0x{sampling:02X}")
    return width, height
