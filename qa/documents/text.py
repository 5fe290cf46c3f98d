"""Text → clean text: normalise OCR'd or user text and read a document as paragraphs and headings.

Two layers:

- ``clean_text`` normalises one piece of text (a paragraph, a query): whitespace inside Chinese,
  ASCII punctuation inside Chinese, full-width letters and digits, invisible characters.
- ``read_blocks`` / ``read_layout`` read a whole document: paragraphs cut in two at column
  breaks are re-joined, section headings are recognised, lines that OCR read across columns
  and page jump markers are dropped. Every block keeps a map back to the source text, so a
  passage cut from it can say exactly which source region it came from.

The rules are written for any text (Chinese, English, mixed, Markdown-ish); thresholds that
depend on the page layout are measured on the document itself (see ``_column_width``).
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import statistics
import unicodedata
from dataclasses import dataclass

__all__ = [
    "CJK",
    "LATIN",
    "Block",
    "DocumentLayout",
    "DroppedText",
    "clean_text",
    "clean_text_with_offsets",
    "is_cjk_letter",
    "is_credit_line",
    "is_sentence_complete",
    "read_blocks",
    "read_layout",
    "split_sentences",
    "to_simplified",
    "writing_script",
]

log = logging.getLogger(__name__)


# the two kinds of writing told apart (``writing_script``)
CJK = "cjk"
LATIN = "latin"


# --- characters -------------------------------------------------------------------------------


def is_cjk_letter(char: str) -> bool:
    """True for Han characters and Japanese kana: scripts written without spaces between words.

    Hangul is left out on purpose: Korean puts spaces between words, so they must be kept.
    """
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x3040 <= code <= 0x30FF
        or 0x3005 <= code <= 0x3007  # 々 〆 〇
        or 0x3100 <= code <= 0x312F
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x3FFFF
    )


def writing_script(text: str) -> str:
    """``cjk`` when most letters are Chinese (or Japanese/Korean) characters, else ``latin``."""
    letters = [character for character in text if character.isalpha()]
    cjk = sum(map(is_cjk_letter, letters))
    return CJK if letters and cjk * 2 >= len(letters) else LATIN


def _is_cjk_punctuation(char: str) -> bool:
    """Full-width punctuation that only occurs in CJK text (，。、：；！？（）《》「」…)."""
    code = ord(char)
    return (
        (0x3001 <= code <= 0x303F and not 0x3005 <= code <= 0x3007)
        or 0xFF01 <= code <= 0xFF65
        or 0xFE10 <= code <= 0xFE1F
        or 0xFE30 <= code <= 0xFE4F
    )


# Used by Chinese and by English typography alike: they count as Chinese only next to Chinese.
_SHARED_PUNCTUATION = frozenset("“”‘’…⋯—–·")

_SENTENCE_FINAL = frozenset("。！？…!?.")
_CLOSING_MARKS = frozenset("”’」』）)\"'")
_CONTINUATION_MARKS = frozenset("，、：；,:;—–-（(“‘「『《[【")


def _display_width(text: str) -> float:
    """Width in full-width cells: half-width characters (ASCII, digits) count one half."""
    return sum(1.0 if unicodedata.east_asian_width(char) in "WF" else 0.5 for char in text if not char.isspace())


def _cjk_share(text: str) -> float:
    """Share of CJK letters among all letters of ``text`` (0.0 when it has no letters)."""
    cjk = other = 0
    for char in text:
        if is_cjk_letter(char):
            cjk += 1
        elif char.isalpha():
            other += 1
    return cjk / (cjk + other) if cjk + other else 0.0


def _han_only(text: str) -> str:
    return "".join(char for char in text if is_cjk_letter(char))


# --- cleaning with an offset map ----------------------------------------------------------------

# An edit replaces text[start:end] by a replacement; the offsets of the new characters are
# spread over the replaced source characters so that first and last map to first and last.
_Edit = tuple[int, int, str]


def _apply_edits(text: str, offsets: list[int], edits: list[_Edit]) -> tuple[str, list[int]]:
    if not edits:
        return text, offsets
    parts: list[str] = []
    new_offsets: list[int] = []
    position = 0
    for start, end, replacement in edits:
        parts.append(text[position:start])
        new_offsets.extend(offsets[position:start])
        parts.append(replacement)
        replaced = offsets[start:end]
        if len(replacement) == len(replaced):
            new_offsets.extend(replaced)
        elif replacement:
            last = len(replacement) - 1
            new_offsets.extend(
                replaced[round(index * (len(replaced) - 1) / last)] if last else replaced[0]
                for index in range(len(replacement))
            )
        position = end
    parts.append(text[position:])
    new_offsets.extend(offsets[position:])
    return "".join(parts), new_offsets


_INVISIBLE = re.compile(
    r"\r\n|[\r\u2028\u2029\x85]"  # line ends → \n
    r"|[\t\x0b\x0c\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]"  # odd spaces → space
    r"|[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200d\u2060\ufeff]"  # controls, zero-width → ""
)


def _invisible_replacement(match: re.Match[str]) -> str:
    found = match.group()
    if found in ("\r\n", "\r", "\u2028", "\u2029", "\x85"):
        return "\n"
    if found in "\t\x0b\x0c\xa0\u1680\u202f\u205f\u3000" or "\u2000" <= found <= "\u200a":
        return " "
    return ""


def _normalise_invisible(text: str, offsets: list[int]) -> tuple[str, list[int]]:
    edits = [(m.start(), m.end(), _invisible_replacement(m)) for m in _INVISIBLE.finditer(text)]
    return _apply_edits(text, offsets, [edit for edit in edits if text[edit[0] : edit[1]] != edit[2]])


# Full-width Latin letters and digits are plain ASCII typed in a CJK input method; folding them is
# safe. Full NFKC is not: it would also turn 。into . and ① into 1, changing meaning and offsets.
_FULL_WIDTH_ALPHANUMERIC = {
    **{0xFF10 + index: 0x30 + index for index in range(10)},
    **{0xFF21 + index: 0x41 + index for index in range(26)},
    **{0xFF41 + index: 0x61 + index for index in range(26)},
}

_TO_FULL_WIDTH = {",": "，", ":": "：", ";": "；", "?": "？", "!": "！", "(": "（", ")": "）"}

_PUNCTUATION_TO_NORMALISE = re.compile(r"\n[^\S\n]*\n|[,:;?!()\"'“”‘’]|[·…⋯]{2,}|[…⋯]|\.{3,}")

# URLs and e-mail addresses keep their ASCII punctuation whatever the language around them.
# The look-behinds make each match start at the beginning of a run: without them a long run of
# letters or digits would be rescanned from every position (quadratic time).
_PROTECTED = re.compile(
    r"(?<![A-Za-z0-9+.-])(?:[A-Za-z][A-Za-z0-9+.-]*://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"
    r"[A-Za-z0-9\-_~/#\[\]@$&'(*+=%]"  # a URL does not end on the punctuation of the sentence around it
    r"|(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)

_NON_LETTERS = re.compile(r"[\W\d_]+")
_CONTEXT_REACH = 40  # characters; farther letters say nothing about a punctuation mark


@dataclass(frozen=True)
class _Letters:
    """Where the runs without letters are, to find the letter nearest to a position quickly."""

    text: str
    gap_starts: list[int]
    gap_ends: list[int]


def _find_letters(text: str) -> _Letters:
    gaps = [(match.start(), match.end()) for match in _NON_LETTERS.finditer(text)]
    return _Letters(text, [start for start, _ in gaps], [end for _, end in gaps])


def _nearest_script(letters: _Letters, index: int, step: int) -> str | None:
    """Script ("cjk" or "other") of the nearest letter before (step -1) or after (step +1) ``index``."""
    position = index + step
    slot = bisect.bisect_right(letters.gap_starts, position) - 1
    if slot >= 0 and position < letters.gap_ends[slot]:  # inside a run without letters: jump over it
        position = letters.gap_starts[slot] - 1 if step < 0 else letters.gap_ends[slot]
    if not 0 <= position < len(letters.text) or abs(position - index) > _CONTEXT_REACH:
        return None
    return "cjk" if is_cjk_letter(letters.text[position]) else "other"


def _in_chinese_context(letters: _Letters, index: int) -> bool:
    """Punctuation belongs to the text it follows; at the start of a text, to the text after it."""
    before = _nearest_script(letters, index, -1)
    if before is not None:
        return before == "cjk"
    return _nearest_script(letters, index, 1) == "cjk"


def _touches_chinese(letters: _Letters, index: int) -> bool:
    """Opening marks (quotes, brackets) are Chinese if the letters on either side are."""
    return _nearest_script(letters, index, -1) == "cjk" or _nearest_script(letters, index, 1) == "cjk"


def _neighbour(text: str, index: int, step: int) -> str:
    position = index + step
    while 0 <= position < len(text) and text[position] == " ":
        position += step
    return text[position] if 0 <= position < len(text) else ""


def _is_chinese_mark(char: str) -> bool:
    return bool(char) and (is_cjk_letter(char) or _is_cjk_punctuation(char) or char in "“”")


def _normalise_punctuation(
    text: str, offsets: list[int], *, quote_may_be_open: bool = False
) -> tuple[str, list[int], bool]:
    """Normalise the punctuation of Chinese text; also returns whether a double quote is left open.

    ``quote_may_be_open``: the text continues a paragraph that ended inside a quote. The quote
    is taken as still open only if the first quote mark here sits where a closing one is
    expected (after 。！？); otherwise it was more likely lost in OCR, and assuming it open
    would turn every later pair of quotes inside out.
    """
    protected = [(m.start(), m.end()) for m in _PROTECTED.finditer(text)]
    protected_starts = [start for start, _ in protected]
    # A URL's letters say nothing about the language of the sentence around it.
    parts, position = [], 0
    for start, end in protected:
        parts += [text[position:start], " " * (end - start)]
        position = end
    letters = _find_letters("".join([*parts, text[position:]]))
    edits: list[_Edit] = []
    inside_double = double_converted = inside_single = False
    first_double = True
    open_parentheses: list[bool] = []
    for match in _PUNCTUATION_TO_NORMALISE.finditer(text):
        start, token = match.start(), match.group()
        if token[0] == "\n":  # a blank line: quotes and brackets do not run across paragraphs
            inside_double = inside_single = False
            open_parentheses.clear()
            continue
        slot = bisect.bisect_right(protected_starts, start) - 1
        if slot >= 0 and start < protected[slot][1]:
            continue
        replacement = token
        if token in "“”\"" and first_double:
            first_double = False
            if quote_may_be_open and _neighbour(text, start, -1) in _SENTENCE_FINAL:
                inside_double, double_converted = True, _touches_chinese(letters, start)
        if token in "“”":
            inside_double, double_converted = token == "“", True
        elif token in "‘’":
            inside_single = token == "‘"
        elif token == '"':
            if inside_double:
                replacement = "”" if double_converted else token
                inside_double = False
            else:
                double_converted = _touches_chinese(letters, start)
                replacement = "“" if double_converted else token
                inside_double = True
        elif token == "'":
            # Only next to Chinese: elsewhere ' is far more often an apostrophe (don't, Xi'an).
            if _is_chinese_mark(_neighbour(text, start, -1)) or _is_chinese_mark(_neighbour(text, start, 1)):
                replacement = "’" if inside_single else "‘"
                inside_single = not inside_single
        elif token == "(":
            converted = _touches_chinese(letters, start)
            open_parentheses.append(converted)
            replacement = "（" if converted else token
        elif token == ")":
            converted = open_parentheses.pop() if open_parentheses else _touches_chinese(letters, start)
            replacement = "）" if converted else token
        elif token in _TO_FULL_WIDTH:
            between_digits = 0 < start < len(text) - 1 and text[start - 1].isdigit() and text[start + 1].isdigit()
            if not between_digits and _in_chinese_context(letters, start):  # 1,000 and 12:30 stay
                replacement = _TO_FULL_WIDTH[token]
        elif _in_chinese_context(letters, start):  # an ellipsis written as ··· … or ...
            replacement = "……"
        if replacement != token:
            edits.append((start, match.end(), replacement))
    return *_apply_edits(text, offsets, edits), inside_double


_DIGIT_LIKE = frozenset("0123456789%‰")


def _space_is_noise(before: str, after: str) -> bool:
    """Whether whitespace between these two characters carries no meaning and can go.

    Chinese puts no spaces between words, and full-width punctuation carries its own spacing;
    in OCR output such spaces are column line breaks (习近 平). Numbers belong to the Chinese
    run they measure (36 万公里). Between Latin words, and between Chinese and a Latin word,
    a single space is kept.
    """
    cjk_before, cjk_after = is_cjk_letter(before), is_cjk_letter(after)
    if _is_cjk_punctuation(before) or _is_cjk_punctuation(after):
        return True
    if cjk_before and cjk_after:
        return True
    if (cjk_before and after in _DIGIT_LIKE) or (before in _DIGIT_LIKE and cjk_after):
        return True
    return (before in _SHARED_PUNCTUATION and cjk_after) or (cjk_before and after in _SHARED_PUNCTUATION)


_WHITESPACE = re.compile(r"\s+")


def _normalise_whitespace(text: str, offsets: list[int]) -> tuple[str, list[int]]:
    edits: list[_Edit] = []
    for match in _WHITESPACE.finditer(text):
        start, end, run = match.start(), match.end(), match.group()
        if start == 0 or end == len(text):
            replacement = ""
        elif run.count("\n") >= 2:
            replacement = "\n\n"
        elif "\n" in run and text[start - 1] == "-" and start >= 2 and text[start - 2].isalpha():
            replacement = ""  # a word hyphenated at a line end: inter-\nnational → inter-national
        else:
            replacement = "" if _space_is_noise(text[start - 1], text[end]) else " "
        if replacement != run:
            edits.append((start, end, replacement))
    return _apply_edits(text, offsets, edits)


def _clean(text: str, *, quote_may_be_open: bool = False) -> tuple[str, list[int], bool]:
    offsets = list(range(len(text)))
    text, offsets = _normalise_invisible(text, offsets)
    text = text.translate(_FULL_WIDTH_ALPHANUMERIC)
    text, offsets, quote_open = _normalise_punctuation(text, offsets, quote_may_be_open=quote_may_be_open)
    return *_normalise_whitespace(text, offsets), quote_open


def clean_text_with_offsets(text: str) -> tuple[str, list[int]]:
    """``clean_text`` plus, for each character of the result, the index in ``text`` it came from."""
    text, offsets, _ = _clean(text)
    return text, offsets


@functools.lru_cache(maxsize=1)
def _simplifier():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional Chinese characters converted to simplified ones (other text unchanged)."""
    return _simplifier().convert(text)


# Characters that show nothing by themselves: format characters (zero-width, bidi and tag
# characters), controls, separators, and the blank letters and selectors that are not format
# characters by category (Hangul fillers, braille blank, variation selectors, combining grapheme joiner).
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_BLANK_CHARACTERS = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def has_visible_text(text: str) -> bool:
    """Whether ``text`` has at least one character that shows (not only blanks and invisible characters).

    Stops at the first visible character, so it is cheap on real text.
    """
    return any(
        not char.isspace() and unicodedata.category(char) not in _BLANK_CATEGORIES and not _BLANK_CHARACTERS.match(char)
        for char in text
    )


def clean_text(text: str) -> str:
    """Normalise a piece of text (a paragraph, a query); idempotent.

    - removes control and zero-width characters; ``\\r\\n``, tabs and odd spaces become plain;
    - removes whitespace inside Chinese text (习近 平 → 习近平), keeps one space between Latin
      words; a blank line (paragraph break) is kept as ``\\n\\n``, a single line break is joined;
    - in Chinese context turns ASCII ``, : ; ? ! ( )`` into ``，：；？！（）``, straight quotes
      into paired “ ” ‘ ’, and ··· / … / ... into ……; leaves English text, numbers (1,000 1.5
      12:30 87.2%), URLs and e-mail addresses alone;
    - folds full-width Latin letters and digits (ＡＢＣ１２３) to ASCII.
    """
    return clean_text_with_offsets(text)[0]


# --- sentences ------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[。！？；]+|[…⋯]+|\.{3}|[!?;]+|\.|\n")
_CLOSERS = re.compile(r"[”’」』）)》\]\"']*")
_NEXT_WORD = re.compile(r"\s*(\S)")
_WORD_BEFORE = re.compile(r"[A-Za-z]+$")
# Abbreviations usually followed by a capitalised name or a number, not by a new sentence.
_ABBREVIATIONS = frozenset(
    {"Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "vs", "Fig", "No"}
    | {"Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"}
)


def _is_latin_sentence_end(text: str, start: int, after: int) -> bool:
    """Whether the ASCII . ! ? ; ending at ``after`` ends a sentence (1.5, e.g., Mr. Smith do not)."""
    following = text[after] if after < len(text) else ""
    if following and not following.isspace() and not is_cjk_letter(following):
        return False  # 1.5, example.com, ?id=3
    if text[start] != ".":
        return True
    word = _WORD_BEFORE.search(text, max(0, start - 20), start)
    if word and (len(word.group()) == 1 or word.group() in _ABBREVIATIONS):
        return False  # e.g. i.e. U.S. J. Smith, Mr. Smith
    next_word = _NEXT_WORD.match(text, after)
    return not (next_word and next_word.group(1).islower())  # "approx. five" continues


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``[start, end)`` of ``text``: in order, covering all of it.

    A sentence ends at 。！？； or an ellipsis, at . ! ? ; followed by a space (not inside 1.5,
    e.g., U.S., after Mr./Dr.), and at a line break; closing quotes and brackets stay with their
    sentence, the whitespace after a sentence belongs to it.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() < start:
            continue  # inside the whitespace already given to the previous sentence
        end = _CLOSERS.match(text, match.end()).end()
        if match.group()[0] in ".!?;" and not _is_latin_sentence_end(text, match.start(), end):
            continue
        while end < len(text) and text[end].isspace():
            end += 1
        if end > start and end < len(text):
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def is_sentence_complete(text: str) -> bool:
    """Whether ``text`` ends like a finished sentence: 。！？… . ! ? or a closing quote/bracket."""
    stripped = text.rstrip()
    return bool(stripped) and (stripped[-1] in _SENTENCE_FINAL or stripped[-1] in _CLOSING_MARKS)


# --- credits -----------------------------------------------------------------------------------
# What a newspaper or an agency prints around a story rather than in it: reporters' by-lines, photo,
# editor and proofreader credits, datelines. They are kept as text (a user may ask who wrote the
# story), but they name people and places, so an encoder finds them "similar" to questions about
# those people and places (a by-line was once the top answer to "Who runs Heshun County?").
_CREDIT_MAX_CHARS = 100
_CREDIT_ROLE = (
    r"(?:本报|本台|本刊|特约|见习|首席)?(?:记者|通讯员|实习生|责任编辑|责编|编辑|美编|校对|审校|审核|终审|摄影|摄像|"
    r"撰文|文字|图片|图文|文图|作者|来源|制图|监制|出品人|统筹)"
)
_CREDIT_NAMES = r"[\u3400-\u9fff·・\s、/|丨]{0,60}"  # names run together once spaces inside Chinese are removed
_CREDIT_PATTERNS = (
    # 山西日报记者：郭宁 王秀娟…  ·  责任编辑：张三 校对：李四  ·  （记者 王五）
    re.compile(rf"[（(【\[]?[\w\s]{{0,12}}?{_CREDIT_ROLE}\s*[:：|丨]?{_CREDIT_NAMES}"
               rf"(?:{_CREDIT_ROLE}\s*[:：|丨]?{_CREDIT_NAMES})*[）)】\]]?"),
    # photo credits: （新华社记者 李贺 摄） · 张三/摄
    re.compile(r"[（(【\[]?[\w\s·、/]{1,30}?\s*/?\s*摄\s*[）)】\]]?"),
    # a dateline standing alone: 新华社北京7月13日电 · 本报太原7月8日讯（记者 张三）
    re.compile(r"(?:新华社|中新社|本报|本台)[\w\s]{0,10}?\d{1,2}\s*月\s*\d{1,2}\s*日\s*[电讯]\s*(?:[（(][^）)]*[）)])?"),
    # English: By Jane Doe · Photo: Reuters · Reporting by A; editing by B · Jane Doe, Staff Writer
    re.compile(r"(?i:by|photo(?:graph)?s?(?: by)?|reporting by|edited by|editing by|editor|credit|source)\s*[:：]?\s*"
               r"[A-Z][\w.'\-]*(?:[\s,;&/]+(?:and|(?i:editing by|staff writer|correspondent)|[A-Z][\w.'\-]*))*\.?"),
)


def is_credit_line(text: str) -> bool:
    """Whether a paragraph is a by-line, photo or editor credit or a dateline, not content.

    ``text`` is a cleaned paragraph (``clean_text``); only short paragraphs that match a credit
    pattern as a whole count, so a sentence that mentions a reporter is still content.
    """
    text = text.strip()
    if not text or len(text) > _CREDIT_MAX_CHARS or _SENTENCE_END_IN_CREDIT.search(text):
        return False
    return any(pattern.fullmatch(text) for pattern in _CREDIT_PATTERNS)


# a by-line never holds a sentence end inside it (a closing "." of an English credit is allowed)
_SENTENCE_END_IN_CREDIT = re.compile(r"[。！？!?](?!$)|[^A-Z]\.\s+[A-Z]\w+\s+\w")


# --- document layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One cleaned paragraph or heading of a document; ``[start, end)`` is its span in the source."""

    text: str
    start: int
    end: int
    is_heading: bool


@dataclass(frozen=True)
class DroppedText:
    """A source region left out of every block, and why (``reason`` is one short phrase)."""

    start: int
    end: int
    reason: str


@dataclass(frozen=True)
class DocumentLayout:
    """A document read as blocks; ``source_offsets[i][k]`` is the source index of ``blocks[i].text[k]``."""

    blocks: list[Block]
    source_offsets: list[list[int]]
    dropped: list[DroppedText]


@dataclass
class _Paragraph:
    """Working record of one source paragraph while the layout is being decided."""

    start: int
    end: int
    text: str
    offsets: list[int]  # source index of each character of text
    lines: list[tuple[int, int]]  # source spans of its column lines
    kind: str = "paragraph"  # paragraph | heading | garbled | marker
    joins_next: bool = False
    is_cjk: bool = False
    ends_inside_quote: bool = False


_LINE = re.compile(r"[^\r\n\u2028\u2029\x85]*(?:\r\n|[\r\n\u2028\u2029\x85])?")
_BLANK = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200d\u2060\ufeff]*")
_MARKDOWN_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]+(?=\S)")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")
_LEADING_SPACE = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]*")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")

# Page jump lines of newspapers and magazines: (上接1版), （下转第3版）, (continued on page 5).
_JUMP_MARKER = re.compile(
    r"[（(【\[]\s*(?:[上下]?[接转]|续|见)\s*第?\s*[0-9一二三四五六七八九十]+\s*[版页面]\s*[）)】\]]"
    r"|\(\s*(?:continued|cont[’']d)\s+(?:from|on)\s+(?:page|p\.)\s*\d+\s*\)",
    re.IGNORECASE,
)


def _trim(source: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so it neither starts nor ends with whitespace."""
    new_start = _LEADING_SPACE.match(source, start, end).end()
    new_end = end
    while new_end > new_start and (source[new_end - 1].isspace() or source[new_end - 1] in _ZERO_WIDTH):
        new_end -= 1
    return new_start, new_end


def _markdown_heading_end(source: str, start: int, end: int) -> int:
    """End of a Markdown heading's title: before optional closing hashes (## Title ##)."""
    line = source[start:end].rstrip()
    title = line.rstrip("#")
    if title != line and (not title or title[-1] in " \t"):
        return start + len(title.rstrip())
    return start + len(line)


def _source_paragraphs(source: str) -> list[tuple[int, int, bool]]:
    """Spans of the source's paragraphs, flagged when they are Markdown headings.

    A paragraph is a run of non-blank lines, its line breaks being hard line breaks to join;
    a Markdown heading line or a list item starts a new one. Where most lines of a run end a
    sentence, the text was written one paragraph per line (标题\n第一段。\n第二段。), and
    each line is a paragraph of its own.
    """
    paragraphs: list[tuple[int, int, bool]] = []
    current: list[tuple[int, int]] = []

    def close() -> None:
        complete = sum(is_sentence_complete(source[start:end]) for start, end in current[:-1])
        if len(current) > 1 and 2 * complete >= len(current) - 1:
            paragraphs.extend((*_trim(source, start, end), False) for start, end in current)
        elif current:
            paragraphs.append((*_trim(source, current[0][0], current[-1][1]), False))
        current.clear()

    for match in _LINE.finditer(source):
        line = match.group()
        if not line:
            continue
        start, end = match.start(), match.start() + len(line.rstrip("\r\n\u2028\u2029\x85"))
        if _BLANK.fullmatch(source, start, end):
            close()
        elif heading := _MARKDOWN_HEADING.match(source, start, end):
            close()
            paragraphs.append((*_trim(source, heading.end(), _markdown_heading_end(source, heading.end(), end)), True))
        else:
            if _LIST_ITEM.match(source, start, end):
                close()
            current.append((start, end))
    close()
    return [paragraph for paragraph in paragraphs if paragraph[1] > paragraph[0]]


def _column_lines(source: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the lines a paragraph was printed in, as far as whitespace shows them.

    OCR output of newspaper columns keeps each column line break as a space or line break
    (必须以永远在路上 的坚韧); whitespace between two Latin words or numbers is ordinary
    spacing and does not break a line.
    """
    lines: list[tuple[int, int]] = []
    line_start = start
    for match in _WHITESPACE.finditer(source, start, end):
        before, after = source[match.start() - 1], source[match.end()]
        if before.isascii() and before.isalnum() and after.isascii() and after.isalnum():
            continue
        lines.append((line_start, match.start()))
        line_start = match.end()
    lines.append((line_start, end))
    return lines


def _clean_region(
    source: str, start: int, end: int, *, quote_may_be_open: bool = False
) -> tuple[str, list[int], bool]:
    """Clean ``source[start:end]``; offsets point into ``source``; the flag: a quote is left open."""
    text, offsets, quote_open = _clean(source[start:end], quote_may_be_open=quote_may_be_open)
    return text, [start + offset for offset in offsets], quote_open


def _join_fragments(source: str, group: list[_Paragraph]) -> tuple[str, list[int]]:
    """Join a broken paragraph's fragments as ``clean_text`` joins lines: no space inside Chinese."""
    text, offsets = group[0].text, list(group[0].offsets)
    quote_open = group[0].ends_inside_quote
    for fragment in group[1:]:
        fragment_text, fragment_offsets = fragment.text, fragment.offsets
        if quote_open:
            fragment_text, fragment_offsets, quote_open = _clean_region(
                source, fragment.start, fragment.end, quote_may_be_open=True
            )
        else:
            quote_open = fragment.ends_inside_quote
        hyphenated = text[-1] == "-" and len(text) > 1 and text[-2].isalpha() and fragment_text[0].islower()
        if not hyphenated and not _space_is_noise(text[-1], fragment_text[0]):
            text += " "
            offsets.append(offsets[-1] + 1)
        text += fragment_text
        offsets.extend(fragment_offsets)
    return text, offsets


# A column line is "full" when it ran to the column edge, i.e. the paragraph did not end there.
# First lines of paragraphs are indented by two cells, so a full line is w-2 .. w+1.5 cells wide.
_FULL_LINE_SLACK_BELOW = 3.0
_FULL_LINE_SLACK_ABOVE = 1.5
_MIN_COLUMN_SAMPLES = 10


def _column_width(paragraphs: list[_Paragraph], source: str) -> float | None:
    """Typical width (in cells) of a full column line, measured on the document's own lines.

    Only lines inside a paragraph (neither first nor last) are surely full; names in a by-line
    and other short pieces are left out. None when the document shows no column layout.
    """
    widths = [
        _display_width(source[start:end])
        for paragraph in paragraphs
        if paragraph.is_cjk
        for start, end in paragraph.lines[1:-1]
    ]
    widths = [width for width in widths if width >= 6]
    return statistics.median(widths) if len(widths) >= _MIN_COLUMN_SAMPLES else None


_NGRAM = 4
_GARBLED_MIN_LINES = 3
_GARBLED_MIN_REPEATED_SHARE = 0.6


def _mark_garbled_paragraphs(paragraphs: list[_Paragraph], source: str) -> None:
    """Mark lines that OCR read straight across several columns.

    Such a line is a row of pieces of neighbouring column lines (走出一条中国特色城市发展道路
    由,推进城镇化是解决 一份地图放在手边…): several space-separated pieces, no sentence end,
    and, the telling part, most of its text also occurs elsewhere in the document, because the
    same column lines were also read properly. We drop these lines rather than keep them as
    low-quality passages: their text is a duplicate (so nothing is lost) and as a passage it
    would match queries about unrelated sentences. A real paragraph is never dropped this way:
    its text is not repeated elsewhere.
    """
    candidates = [
        index
        for index, paragraph in enumerate(paragraphs)
        if paragraph.kind == "paragraph"
        and paragraph.is_cjk
        and len(paragraph.lines) >= _GARBLED_MIN_LINES
        and not any(char in "。！？!?" for char in paragraph.text)
    ]
    if not candidates:
        return
    owners: dict[str, set[int]] = {}
    for index, paragraph in enumerate(paragraphs):
        for start, end in paragraph.lines:
            han = _han_only(source[start:end])
            for position in range(len(han) - _NGRAM + 1):
                owners.setdefault(han[position : position + _NGRAM], set()).add(index)
    for index in candidates:
        covered = total = 0
        for start, end in paragraphs[index].lines:
            han = _han_only(source[start:end])
            repeated = [False] * len(han)
            for position in range(len(han) - _NGRAM + 1):
                if owners[han[position : position + _NGRAM]] - {index}:
                    repeated[position : position + _NGRAM] = [True] * _NGRAM
            covered += sum(repeated)
            total += len(han)
        if total and covered / total >= _GARBLED_MIN_REPEATED_SHARE:
            paragraphs[index].kind = "garbled"


_REREAD_MAX_WIDTH_SHARE = 0.75
_REREAD_MIN_SHARE = 0.5


def _matching_characters(piece: str, window: str, *, aligned_at_end: bool) -> int:
    """Most characters of ``piece`` equal, position by position, to ``window`` under one alignment."""
    if aligned_at_end:
        return sum(a == b for a, b in zip(reversed(piece), reversed(window)))
    best = 0
    for shift in range(-len(piece) + 1, len(window)):
        best = max(
            best,
            sum(1 for k, char in enumerate(piece) if 0 <= shift + k < len(window) and window[shift + k] == char),
        )
    return best


def _trim_reread_lines(paragraphs: list[_Paragraph], source: str, width: float) -> list[DroppedText]:
    """Drop short column lines at a paragraph's edge that OCR re-read from the neighbouring paragraph.

    Reading across columns also leaves stray short pieces at paragraph edges: 巴脉升方。 before a
    paragraph, right after one ending 把脉开方。; 里面清晰的治理用数 面精准的治理体 at the end of
    a paragraph followed by 果、更清晰的治理思路、更精准的治理体系. Only a column line can be such
    a piece (the paragraph has at least three), it must be clearly shorter than a full line, and
    it must repeat the adjacent text of the neighbour character by character, so real text,
    which does not repeat its neighbour, is kept.
    """
    dropped: list[DroppedText] = []
    kept = [p for p in paragraphs if p.kind in ("paragraph", "heading")]
    for position, paragraph in enumerate(kept):
        if not paragraph.is_cjk or paragraph.kind != "paragraph" or len(paragraph.lines) < 3:
            continue
        previous = kept[position - 1] if position else None
        following = kept[position + 1] if position + 1 < len(kept) else None
        first = paragraph.lines[0]
        first_han = _han_only(source[first[0] : first[1]])
        if previous is not None and _display_width(source[first[0] : first[1]]) < _REREAD_MAX_WIDTH_SHARE * width:
            tail = _han_only(previous.text)[-len(first_han) :] if first_han else ""
            matches = _matching_characters(first_han, tail, aligned_at_end=True)
            if matches >= 2 and matches >= _REREAD_MIN_SHARE * len(first_han):
                dropped.append(DroppedText(first[0], first[1], "re-read of the previous paragraph"))
                paragraph.lines.pop(0)
        while following is not None and len(paragraph.lines) > 1:
            last = paragraph.lines[-1]
            raw_text = source[paragraph.lines[0][0] : last[1]]
            if is_sentence_complete(clean_text(raw_text)):
                break  # a line re-read at the end leaves the paragraph ending mid-sentence
            last_han = _han_only(source[last[0] : last[1]])
            if not last_han or _display_width(source[last[0] : last[1]]) >= _REREAD_MAX_WIDTH_SHARE * width:
                break
            head = _han_only(following.text)[: len(last_han) + round(width)]
            matches = _matching_characters(last_han, head, aligned_at_end=False)
            if matches < 3 or matches < _REREAD_MIN_SHARE * len(last_han):
                break
            dropped.append(DroppedText(last[0], last[1], "re-read of the next paragraph"))
            paragraph.lines.pop()
        if paragraph.lines[0][0] != paragraph.start or paragraph.lines[-1][1] != paragraph.end:
            paragraph.start, paragraph.end = paragraph.lines[0][0], paragraph.lines[-1][1]
            paragraph.text, paragraph.offsets, paragraph.ends_inside_quote = _clean_region(
                source, paragraph.start, paragraph.end
            )
    return dropped


_HEADING_MAX_WIDTH = 30.0  # cells; a line without final punctuation that is longer is a fragment
_MARKED_HEADING_MAX_WIDTH = 40.0  # for lines marked as headings by —— or quotes
_QUOTED_LINE = re.compile(r"[“「『\"]([^“”「」『』\"。！？!?]+)[”」』\"]")
_ENGLISH_FUNCTION_WORDS = frozenset(
    {"a", "an", "the", "and", "or", "but", "nor", "of", "to", "in", "on", "at", "for", "with", "by", "from"}
    | {"as", "that", "because", "if", "than", "into", "onto", "our", "their", "its", "his", "her", "my", "your"}
)


def _is_marked_heading(text: str) -> bool:
    """A short line ending in a dash (推进城市治理创新——) or one quoted slogan (“城市是现代化的重要载体”)."""
    if _display_width(text) > _MARKED_HEADING_MAX_WIDTH:
        return False
    return text.endswith(("—", "--")) or _QUOTED_LINE.fullmatch(text) is not None


def _word_runs_across(left: str, right: str) -> bool:
    """Whether a Chinese word runs across the end of ``left`` into ``right`` (推进方|式 → 方式)."""
    if not (left and right and is_cjk_letter(left[-1]) and is_cjk_letter(right[0])):
        return False
    try:
        import jieba  # imported only when needed: loading its dictionary takes about a second
    except ImportError:  # without a word list, other signals must decide
        return False
    jieba.setLogLevel(logging.WARNING)  # it reports loading its dictionary on stderr otherwise

    head = left[-4:]
    position = 0
    for word in jieba.lcut(head + right[:4], HMM=False):
        if position < len(head) < position + len(word):
            return True
        position += len(word)
    return False


def _looks_cut(paragraph: _Paragraph, following: _Paragraph, source: str, width: float | None) -> bool:
    """Whether a paragraph without final punctuation is the first half of a broken paragraph
    (rather than a heading): it is long, ends on a comma or an open quote, ran to the column
    edge, or ends in the middle of a word."""
    text, next_text = paragraph.text, following.text
    if text[-1] in _CONTINUATION_MARKS or _display_width(text) > _HEADING_MAX_WIDTH:
        return True
    if any(text.count(opening) > text.count(closing) for opening, closing in ("“”", "（）", "()", "《》", "「」")):
        return True
    if paragraph.is_cjk and width is not None:
        last_start, last_end = paragraph.lines[-1]
        last_width = _display_width(source[last_start:last_end])
        if width - _FULL_LINE_SLACK_BELOW <= last_width <= width + _FULL_LINE_SLACK_ABOVE:
            return True
    last_word = re.search(r"[A-Za-z]+$", text)
    if last_word and last_word.group().lower() in _ENGLISH_FUNCTION_WORDS:
        return True
    if next_text[0].islower():
        return True
    return _word_runs_across(text, next_text)


def _decide_headings_and_joins(paragraphs: list[_Paragraph], source: str, width: float | None) -> None:
    """Classify each paragraph lacking final punctuation as heading, first half, or standalone.

    Decided from the end, because whether a line is a heading depends on what follows it: a
    heading is followed by a paragraph, and a first half is continued by a paragraph.
    """
    kept = [p for p in paragraphs if p.kind in ("paragraph", "heading")]
    for position in range(len(kept) - 1, -1, -1):
        paragraph = kept[position]
        following = kept[position + 1] if position + 1 < len(kept) else None
        if paragraph.kind == "heading" or following is None or _LIST_ITEM.match(paragraph.text):
            continue  # a list item is neither a heading nor half of a paragraph
        if _is_marked_heading(paragraph.text):
            paragraph.kind = "heading"
        elif is_sentence_complete(paragraph.text) or following.kind == "heading" or _LIST_ITEM.match(following.text):
            continue
        elif _looks_cut(paragraph, following, source, width):
            paragraph.joins_next = True
        else:
            paragraph.kind = "heading"


def read_layout(source: str) -> DocumentLayout:
    """Read ``source`` as cleaned paragraphs and headings, with maps back to the source.

    Paragraphs broken at column or page breaks are re-joined; headings are recognised; page jump
    markers and lines garbled by reading across columns are dropped (listed in ``dropped``).
    """
    paragraphs: list[_Paragraph] = []
    for start, end, is_markdown_heading in _source_paragraphs(source):
        text, offsets, quote_open = _clean_region(source, start, end)
        if not text:
            continue
        paragraph = _Paragraph(start, end, text, offsets, _column_lines(source, start, end))
        paragraph.ends_inside_quote = quote_open
        paragraph.is_cjk = _cjk_share(text) >= 0.5
        if is_markdown_heading:
            paragraph.kind = "heading"
        elif _JUMP_MARKER.fullmatch(text):
            paragraph.kind = "marker"
        paragraphs.append(paragraph)

    _mark_garbled_paragraphs(paragraphs, source)
    width = _column_width(paragraphs, source)
    dropped = [
        DroppedText(p.start, p.end, "page jump marker" if p.kind == "marker" else "garbled across columns")
        for p in paragraphs
        if p.kind in ("marker", "garbled")
    ]
    if width is not None:
        dropped.extend(_trim_reread_lines(paragraphs, source, width))
    _decide_headings_and_joins(paragraphs, source, width)

    blocks: list[Block] = []
    source_offsets: list[list[int]] = []
    group: list[_Paragraph] = []
    for paragraph in (p for p in paragraphs if p.kind in ("paragraph", "heading")):
        group.append(paragraph)
        if paragraph.joins_next:
            continue
        text, offsets = _join_fragments(source, group)
        blocks.append(Block(text, offsets[0], offsets[-1] + 1, paragraph.kind == "heading"))
        source_offsets.append(offsets)
        group = []
    for item in sorted(dropped, key=lambda item: item.start):
        log.debug("dropped %s: %r", item.reason, source[item.start : item.end])
    return DocumentLayout(blocks, source_offsets, sorted(dropped, key=lambda item: item.start))


def read_blocks(source: str) -> list[Block]:
    """The document as cleaned paragraphs and headings, in order, broken paragraphs re-joined."""
    return read_layout(source).blocks
