"""The compression codecs of RecordBatch attributes bits 0-2, as Kafka's Java clients write them.

gzip: a gzip stream; snappy: Xerial framing (what Java's SnappyOutputStream writes; plain raw
snappy is accepted when reading); lz4: the LZ4 frame format with independent 64 KiB blocks;
zstd: a zstd frame.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Iterator

import cramjam
import lz4.frame
import zstandard

from raftlog.log.errors import CorruptRecordError, UnsupportedCompressionError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
_IDS = {name: codec for codec, name in _NAMES.items()}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_BYTES = 32 * 1024
_zstd_compressor = zstandard.ZstdCompressor(level=3)
_zstd_decompressor = zstandard.ZstdDecompressor()


def codec_id(name: str | None) -> int:
    if name in (None, "", "none", "uncompressed"):
        return NONE
    if name not in _IDS:
        raise UnsupportedCompressionError(f"compression {name!r} is not one of none, gzip, snappy, lz4, zstd")
    return _IDS[name]


def codec_name(codec: int) -> str:
    return _NAMES.get(codec, f"unknown({codec})")


def compress(codec: int, data: bytes) -> bytes:
    if codec == GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if codec == SNAPPY:
        blocks = [_XERIAL_HEADER]
        for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_BYTES]))
            blocks.append(struct.pack(">i", len(block)) + block)
        return b"".join(blocks)
    if codec == LZ4:
        return lz4.frame.compress(
            data, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False, content_checksum=False
        )
    if codec == ZSTD:
        return _zstd_compressor.compress(data)
    raise UnsupportedCompressionError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes) -> bytes:
    try:
        if codec == GZIP:
            return gzip.decompress(data)
        if codec == SNAPPY:
            return _snappy_decompress(data)
        if codec == LZ4:
            return lz4.frame.decompress(data)
        if codec == ZSTD:
            return _zstd_decompressor.decompressobj().decompress(data)
    except (
        OSError,
        EOFError,
        zlib.error,
        RuntimeError,
        ValueError,
        zstandard.ZstdError,
        cramjam.DecompressionError,
    ) as exc:
        raise CorruptRecordError(f"{codec_name(codec)} data does not decompress: {exc}") from None
    raise UnsupportedCompressionError(f"unknown compression codec {codec}")


_SIZE_CHUNK_BYTES = 64 * 1024


def decompressed_size_up_to(codec: int, data: bytes, limit_bytes: int) -> int:
    """The size `data` decompresses to, counted only up to limit_bytes + 1: it streams and stops
    there, so a small batch that inflates to gigabytes (a decompression bomb) costs at most
    limit_bytes of work and no memory beyond one chunk."""
    stop = limit_bytes + 1
    try:
        if codec == GZIP:
            return _gzip_size(data, stop)
        if codec == SNAPPY:
            return min(_snappy_size(data), stop)
        if codec == LZ4:
            return _lz4_size(data, stop)
        if codec == ZSTD:
            total = 0
            with _zstd_decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                while total < stop:
                    chunk = reader.read(min(_SIZE_CHUNK_BYTES, stop - total))
                    if not chunk:
                        break
                    total += len(chunk)
            return total
    except (
        OSError,
        EOFError,
        zlib.error,
        RuntimeError,
        ValueError,
        zstandard.ZstdError,
        cramjam.DecompressionError,
    ) as exc:
        raise CorruptRecordError(f"{codec_name(codec)} data does not decompress: {exc}") from None
    raise UnsupportedCompressionError(f"unknown compression codec {codec}")


def _gzip_size(data: bytes, stop: int) -> int:
    total, rest = 0, data
    while rest and total < stop:  # a gzip stream may hold several members
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        while pending and total < stop:
            total += len(inflater.decompress(pending, min(_SIZE_CHUNK_BYTES, stop - total)))
            pending = inflater.unconsumed_tail
        if total >= stop:
            break
        if not inflater.eof:
            raise CorruptRecordError("gzip data is cut off")
        rest = inflater.unused_data
    return min(total, stop)


def _lz4_size(data: bytes, stop: int) -> int:
    total, pending = 0, data
    while total < stop:
        inflater = lz4.frame.LZ4FrameDecompressor()
        total += len(inflater.decompress(pending, min(_SIZE_CHUNK_BYTES, stop - total)))
        while not inflater.eof and not inflater.needs_input and total < stop:
            total += len(inflater.decompress(b"", min(_SIZE_CHUNK_BYTES, stop - total)))
        if total >= stop or not inflater.eof or not inflater.unused_data:
            break
        pending = inflater.unused_data
    return min(total, stop)


def _snappy_size(data: bytes) -> int:
    """Raw snappy starts each block with its uncompressed length: summed without decompressing."""
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_raw_length(data, 0)
    return sum(_snappy_raw_length(data, pos) for pos, _ in _xerial_blocks(data))


def _xerial_blocks(data: bytes) -> Iterator[tuple[int, int]]:
    """(position, length) of each block of a Xerial-framed snappy stream, checked to fit."""
    pos = len(_XERIAL_HEADER)
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise CorruptRecordError("xerial snappy block runs past the end")
        yield pos, length
        pos += length


def _snappy_raw_length(data: bytes, pos: int) -> int:
    value, shift = 0, 0
    for index in range(pos, min(pos + 5, len(data))):
        value |= (data[index] & 0x7F) << shift
        if not data[index] & 0x80:
            return value
        shift += 7
    raise CorruptRecordError("snappy block has no valid length")


def _snappy_decompress(data: bytes) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    return b"".join(
        bytes(cramjam.snappy.decompress_raw(data[pos : pos + length])) for pos, length in _xerial_blocks(data)
    )
