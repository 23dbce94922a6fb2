"""A 5x7 bitmap font, enough to draw a prompt into an emulated video (no font dependency).

Upper-case letters, digits and common punctuation; lower case is drawn upper case, anything else
as a small box. :func:`text_mask` lays text out in lines and returns it as a boolean image.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GLYPH_H", "GLYPH_W", "text_mask"]

GLYPH_W, GLYPH_H = 5, 7
_ADVANCE_X, _ADVANCE_Y = GLYPH_W + 1, GLYPH_H + 2

# Each glyph: 7 rows, 5 pixels each, "#" on.
_GLYPHS_SRC = {
    "A": ".###.#...##...#######...##...##...#",
    "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.",
    "D": "####.#...##...##...##...##...#####.",
    "E": "######....#....####.#....#....#####",
    "F": "######....#....####.#....#....#....",
    "G": ".###.#...##....#.####...##...#.####",
    "H": "#...##...##...#######...##...##...#",
    "I": ".###...#....#....#....#....#...###.",
    "J": "..###...#....#....#....##..#..##...",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#",
    "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#",
    "N": "#...##...###..##.#.##..###...##...#",
    "O": ".###.#...##...##...##...##...#.###.",
    "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#",
    "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".####.....#.....###.....#....#####.",
    "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.",
    "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#.#.#.#.",
    "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..",
    "Z": "#####....#...#...#...#...#....#####",
    "0": ".###.#...##..###.#.###..##...#.###.",
    "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####",
    "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.",
    "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.",
    "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.",
    "9": ".###.#...##...#.####....#...#..##..",
    ".": "." * 25 + ".##.." * 2,
    ",": "." * 20 + ".##....#...#...",
    "'": "..#....#...#.......................",
    '"': ".#.#..#.#..#.#.....................",
    "-": "." * 15 + ".###." + "." * 15,
    "!": "..#....#....#....#....#.........#..",
    "?": ".###.#...#....#...#...#.........#..",
    ":": ".......##...##.........##...##.....",
    ";": ".......##...##.........##...#...#..",
    "(": "...#...#...#....#....#.....#.....#.",
    ")": ".#.....#.....#....#....#...#...#...",
    "/": ".........#...#...#...#...#.........",
    "&": ".##..#..#.#.#...#...#.#.##..#..##.#",
    "+": ".......#....#..#####..#....#.......",
    "=": "..........#####.....#####..........",
    " ": "." * 35,
}
_UNKNOWN = "." * 5 + ".###." + ".#.#." * 3 + ".###." + "." * 5


def _parse(src: str) -> np.ndarray:
    rows = (src + "." * 35)[:35]
    return np.array([c == "#" for c in rows], dtype=bool).reshape(GLYPH_H, GLYPH_W)


_GLYPHS = {ch: _parse(src) for ch, src in _GLYPHS_SRC.items()}
_FALLBACK = _parse(_UNKNOWN)


def wrap(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters (words kept whole where they fit)."""
    lines: list[str] = []
    line = ""
    for word in text.upper().split():
        while len(word) > width:  # a word longer than a line is cut
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3] + "..."
    return lines


def text_mask(text: str, width: int, max_lines: int) -> np.ndarray:
    """A boolean image ``width`` pixels wide with ``text`` drawn on it, one row per line."""
    lines = wrap(text, max(1, (width - 2) // _ADVANCE_X), max_lines)
    mask = np.zeros((max(1, len(lines)) * _ADVANCE_Y + 1, width), dtype=bool)
    for row, line in enumerate(lines):
        y = 1 + row * _ADVANCE_Y
        for col, ch in enumerate(line):
            x = 1 + col * _ADVANCE_X
            mask[y : y + GLYPH_H, x : x + GLYPH_W] = _GLYPHS.get(ch, _FALLBACK)
    return mask
