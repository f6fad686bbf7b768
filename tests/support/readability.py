"""Reading ease for the words patients read (issue 8, point 2): the Flesch reading ease and the
longest sentence, with syllables counted by pyphen's hyphenation dictionary (offline; textstat
downloads a corpus at run time). Reading ease 70 or more is about a reading age of 9 to 11.

pyphen finds hyphenation points, not syllables: with `left=1, right=1` (a point may leave one
letter at either end) it comes close to a syllable count, a little under for some words ("about"
is one, "individual" four); a word has at least one syllable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import pyphen

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@cache
def _dictionary() -> pyphen.Pyphen:
    return pyphen.Pyphen(lang="en_GB", left=1, right=1)


def syllables(word: str) -> int:
    return max(1, len(_dictionary().positions(word.lower())) + 1)


def sentences(text: str) -> list[list[str]]:
    """The words of each sentence (a sentence ends at . ! ? or a line break)."""
    found = (_WORD.findall(s) for s in _SENTENCE_END.split(text))
    return [words for words in found if words]


@dataclass(frozen=True)
class Readability:
    reading_ease: float
    longest_sentence: int  # words
    words: int


def readability(text: str) -> Readability:
    said = sentences(text)
    words = [w for s in said for w in s]
    assert words, "no words to read"
    ease = (
        206.835
        - 1.015 * len(words) / len(said)
        - 84.6 * sum(syllables(w) for w in words) / len(words)
    )
    return Readability(round(ease, 1), max(len(s) for s in said), len(words))
