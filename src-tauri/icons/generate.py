#!/usr/bin/env python3
"""Writes Leakwatch's placeholder icons: monochrome 32x32 tray templates
(ok, warning, critical: black on transparent, so macOS tints them) and the app
icon sizes the bundle needs. Standard library only. Proper design is a later issue.

Run from anywhere: python3 src-tauri/icons/generate.py
"""
import math, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def png(path, size, pixel):
    rows = b""
    for y in range(size):
        rows += b"\x00" + b"".join(bytes(pixel(x + 0.5, y + 0.5, size)) for x in range(size))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def cover(inside, x, y, s):
    """Alpha 0..255 by 4x4 supersampling of the predicate `inside`."""
    n = sum(inside(x - 0.5 + (i + 0.5) / 4, y - 0.5 + (j + 0.5) / 4, s) for i in range(4) for j in range(4))
    return round(255 * n / 16)


def ring(x, y, s):
    r = math.hypot(x - s / 2, y - s / 2) / s
    return 0.30 <= r <= 0.42


def drop(x, y, s):
    """A drop (the leak) in the middle."""
    cx, cy, r = s / 2, s * 0.58, s * 0.15
    if math.hypot(x - cx, y - cy) <= r:
        return True
    return y < cy and y > s * 0.26 and abs(x - cx) <= r * (y - s * 0.26) / (cy - s * 0.26)


def bang(x, y, s):
    cx = s / 2
    return (abs(x - cx) <= s * 0.06 and s * 0.22 <= y <= s * 0.60) or math.hypot(x - cx, y - s * 0.74) <= s * 0.07


def disc(x, y, s):
    return math.hypot(x - s / 2, y - s / 2) / s <= 0.46


def variant(kind):
    def pixel(x, y, s):
        if kind == "ok":
            a = cover(lambda x, y, s: ring(x, y, s) or drop(x, y, s), x, y, s)
        elif kind == "warning":
            a = cover(lambda x, y, s: ring(x, y, s) or bang(x, y, s), x, y, s)
        else:  # critical: a filled disc with the mark cut out
            a = cover(lambda x, y, s: disc(x, y, s) and not bang(x, y, s), x, y, s)
        return (0, 0, 0, a)
    return pixel


def app_pixel(x, y, s):
    a = cover(disc, x, y, s)
    if a == 0:
        return (0, 0, 0, 0)
    mark = cover(lambda x, y, s: ring(x, y, s) or drop(x, y, s), x, y, s) / 255
    base = (36, 99, 235)
    return tuple(round(c * (1 - mark) + 255 * mark) for c in base) + (a,)


os.makedirs(os.path.join(HERE, "tray"), exist_ok=True)
for kind in ("ok", "warning", "critical"):
    png(os.path.join(HERE, "tray", f"{kind}.png"), 32, variant(kind))
for name, size in (("32x32.png", 32), ("128x128.png", 128), ("icon.png", 512)):
    png(os.path.join(HERE, name), size, app_pixel)
