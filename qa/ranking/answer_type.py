"""The kind of answer a question asks for (a time, a number), and whether a sentence offers one.

"广三铁路在哪年建成？" is answered by the sentence that holds a year ("广三铁路于1903年筑成"), not
by the one that names the railway most often; "How many people live in the community?" by the
one with a number in it. Only these two kinds are recognised: they are asked often (a sixth of
cmrc2018's questions), and a sentence's offer of them can be seen without a reader model
(digits, Chinese numerals before a measure word, 年/月/日, month names). "Who" and "where" are not:
telling a name or a place in a sentence would need one.

A question asking for a quantity of some kind ("多少游客", "How much money was spent…", "城墙有多长")
is answered only by a text that states one: a number of people, an amount of money, a length. A
passage about the right place that states no such quantity ("高君宇故居纪念馆…" for "高君宇故居纪念馆
每年接待多少游客？") does not answer it, however close its words; ``Quantity`` recognises five kinds
(people, money, length, area, percentage) and counts with a measure word ("多少处"), in Chinese and
English, and confidence (qa.ranking.confidence) lowers a result that states none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from qa.documents.text import CJK, writing_script
from qa.vectors.lexical import fold, segmenter

TIME = "time"
NUMBER = "number"

_NUMERALS = "零〇一二两三四五六七八九十百千万亿"
# a measure word or unit after a count: 七分, 两年, 三十六回, 二十余人
_MEASURES = "个位名人次种条座年岁天月周号点家所项部本张层级届回场分元米里克吨倍辆间队只头件首台期余多"
_ASKS_TIME = re.compile(
    r"什么时候|什么时间|何时|哪一?年|何年|哪一?天|哪一?日|几月|几号|哪个朝代|什么朝代|什么年代|哪个年代|哪个世纪"
    r"|^when\b|\bwhen (?:did|was|were|is|are|does|do|will|has|had|can)\b"
    r"|\bwhat (?:year|date|time|century|decade)\b|\bwhich (?:year|century|decade)\b"
)
_ASKS_NUMBER = re.compile(
    rf"多少|(?<!哪)几[{_MEASURES}]|多大|多长|多高|多远|多重|多宽|多深|多久|多厚|多快|百分之|比例|比率"
    r"|\bhow (?:many|much|long|far|big|old|tall|high|large|often)\b|\bwhat (?:percentage|proportion|number)\b"
)
_LATER_QUESTION_WORD = re.compile(r"\b(?:which|what|who|whom|whose|where|how)\b")
_OFFERS_NUMBER = re.compile(rf"\d|[{_NUMERALS}]+[{_MEASURES}%]")
_OFFERS_TIME = re.compile(
    rf"\d+\s*[年月日]|[{_NUMERALS}]+[年月日]|世纪|年代|(?<!\d)(?:1[0-9]|20)\d\d(?!\d)"
    r"|\b(?:january|february|march|april|may|june|july|august|september|october|november|december)\b"
)


def asked_type(question: str) -> str | None:
    """``TIME`` or ``NUMBER`` when the question asks for one (a time before a number: "哪一年" is both), else None.

    An opening "When" followed by another question word ("When Xi spoke in Tianjin, which cities…")
    opens a clause and asks for nothing.
    """
    folded = fold(question)
    match = _ASKS_TIME.search(folded)
    if match and not (match.start() == 0 and _LATER_QUESTION_WORD.search(folded, match.end())):
        return TIME
    if _ASKS_NUMBER.search(folded):
        return NUMBER
    return None


def offers(kind: str | None, sentence: str) -> bool:
    """Whether a sentence holds something of the asked kind (False when nothing is asked)."""
    return offers_folded(kind, fold(sentence))


def offers_folded(kind: str | None, folded: str) -> bool:
    """``offers`` for a sentence already folded (``fold``), as the sentence scorer has it."""
    if kind is None:
        return False
    pattern = _OFFERS_TIME if kind == TIME else _OFFERS_NUMBER
    return pattern.search(folded) is not None


# a number as a quantity is written: digits or Chinese numerals, "余/多" (more than), a multiplier
_AMOUNT = rf"(?:\d[\d,.]*|[{_NUMERALS}]+)\s*(?:余|多)?\s*(?:万|亿|千|百)?\s*"
_ENGLISH_NUMBER = (
    r"\b(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty"
    r"|forty|fifty|sixty|seventy|eighty|ninety|a hundred|a thousand|a million|dozens?|several)\b"
)
_ENGLISH_AMOUNT = rf"{_ENGLISH_NUMBER}\s*(?:hundred|thousand|million|billion)?\s*"
_FRACTION = r"\d+\s*/\s*\d+|分之|[一二三四五六七八九十两]成"
_ENGLISH_FRACTION = r"\d+\s*/\s*\d+|\bhalf\b|\bthirds?\b|\bquarters?\b"
_PEOPLE_NOUNS = "people|persons|residents|inhabitants|visitors|tourists|employees|staff|workers|students|members"
_IS_ASKED = r"(?:是|为|有|达|约)?(?:多少|几)"
# kind: (how a question asks for it, how Chinese text states one, how English text states one);
# matched on folded text (lower case, simplified characters)
_QUANTITIES: dict[str, tuple[str, str, str]] = {
    "percentage": (
        r"比例|比率|百分之|百分比|(?:城镇化|增长|覆盖|就业|失业|利用|达标)率|\bpercentage\b|\bproportion\b|\brate\b",
        # a ratio is a number too ("性别比例为约1,068")
        rf"%|百分之|{_FRACTION}|比例[^。；;]{{0,6}}?\d",
        rf"%|\bper ?cent\b|{_ENGLISH_FRACTION}",
    ),
    "people": (
        rf"人口{_IS_ASKED}|多少人|几人|人数|多少(?:名|位)|多少(?:工作人员|员工|职工|游客|居民|学生|人员|观众)"
        rf"|(?:工作人员|员工|职工|游客|居民|学生|人员|观众)(?:有|达|数)?(?:多少|几)"
        rf"|\bhow many (?:{_PEOPLE_NOUNS})\b|\bpopulation\b",
        rf"{_AMOUNT}(?:人|名|位|人次)|{_AMOUNT}[^\s，。；、,;]{{0,6}}?(?:人口|居民|游客|员工|职工|工作人员|学生|观众)"
        rf"|(?:\d[\d,.]*|[{_NUMERALS}]+)\s*(?:余|多)?\s*(?:万|亿)|{_FRACTION}",
        # English names what it counts in many ways ("four Pro Bowl selections", "the population was
        # estimated at 2,000", "the average family size was 3.62"): any number will do
        rf"{_ENGLISH_NUMBER}|{_ENGLISH_FRACTION}",
    ),
    "money": (
        rf"多少钱|花了多少|(?:费用|资金|投资|资本|生产总值|gdp|收入|营收|价格|造价|成本|预算|金额){_IS_ASKED}"
        r"|\bhow much money\b|\bhow much\b.*\b(?:cost|costs|spend|spent|pay|paid|worth|earn|earned|raise|raised)\b"
        r"|\bwhat (?:is|was) the (?:gdp|registered capital|cost|price|revenue|budget|income)\b",
        rf"{_AMOUNT}(?:元|美元|港元|澳门元|欧元|英镑|日元|块钱)|[¥$€£]\s*\d",
        rf"[¥$€£]\s*\d|{_ENGLISH_AMOUNT}(?:dollars|yuan|rmb|euros?|pounds|usd)\b",
    ),
    "length": (
        # "城墙有多长" asks for a length; "任期是多长", "寿命有多长", "多长时间" for a duration
        rf"多远|多高|多宽|多深|(?:长度|距离|高度|宽度|深度|海拔){_IS_ASKED}|^(?!.*(?:期|寿命|时长|时间|多久)).*多长"
        # not "how long": as often a duration ("How long was the theatre in operation?")
        r"|\bhow (?:far|tall|high|wide|deep) (?:is|are|was|were)\b|\bwhat (?:is|was) the (?:length|distance|height)\b",
        rf"{_AMOUNT}(?:米|公里|千米|里|厘米|毫米|英里|尺|丈|海里|公分|公尺|英尺|英寸|光年|km|cm|mm|m\b)",
        rf"{_ENGLISH_AMOUNT}(?:meters|metres|km|kilometers|kilometres|miles|feet|ft|foot|inches|cm|mm|m"
        r"|light[- ]years)\b",
    ),
    "area": (
        rf"面积{_IS_ASKED}|面积有?多大|多大面积|占地多少|\bwhat (?:is|was) the (?:total |land )?area of\b",
        rf"{_AMOUNT}(?:平方(?:公里|千米|米|英里)|亩|公顷|km2|m2)",
        rf"{_ENGLISH_AMOUNT}(?:square|sq|km2|m2|hectares|acres)\b",
    ),
    # measure words vary ("多少家分店": "28间分店"; "几个阶段": "四阶段"), so any number states a count
    "count": (
        r"(?<!哪)(?:多少|几)[个处条座所家项部种栋台辆]",
        rf"\d|[{_NUMERALS}][\u4e00-\u9fff]",
        _ENGLISH_NUMBER,
    ),
}
# a question asking which, where or who, or for a time, names something ("哪个城市人口最多" asks for a city)
_ASKS_OTHER = re.compile(r"哪|\b(?:which|where|who|whom|whose)\b")


# an office, as the word naming it ends: 县长, 市委书记, 董事长, 国家主席
_OFFICE = re.compile(r"(?:长|书记|主席|总统|总理|首相|主任|总裁|经理)$")
_HOLDER_ASKED = re.compile(r"^(?P<office>.+?)(?:是|为)谁[?？。!！]?$|^谁是(?P<office2>.+?)[?？。!！]?$")
_CHINESE_WORD = re.compile(r"[\u3400-\u9fff]{2,}")


def asked_office(question: str) -> str | None:
    """The office a Chinese question asks the holder of, folded ("和顺县县长是谁？" → 县长, "谁是太原市委书记？"
    → 市委书记), or None.

    A passage that never names that office cannot say who holds it, however close its other words: the
    page's "和顺县委书记许利伟" does not answer "和顺县县长是谁？". Only offices (a word ending in 长, 书记, 主席,
    总统...) are asked of this way: other roles are often said otherwise ("…的作者是谁" is answered by "由…
    所著"; measured in the README). English questions are left alone: across scripts the dictionary's
    offices do not line up (主席 gives chairman, the passage says chair).
    """
    match = _HOLDER_ASKED.match(fold(question).strip())
    if not match:
        return None
    words = [word for word in segmenter().lcut(match.group("office") or match.group("office2")) if word.strip()]
    office = words[-1] if words else ""
    return office if _CHINESE_WORD.fullmatch(office) and _OFFICE.search(office) else None


def names_office(office: str, text: str, *context: str) -> bool:
    """Whether a passage, or its ``context`` (its heading), names an office (``asked_office``) as written;
    a passage in another script than Chinese is not judged (True)."""
    return writing_script(text) != CJK or office in fold("\n".join((text, *context)))


@dataclass(frozen=True)
class Quantity:
    """A quantity a question asks for: its kind (``people``, ``money``, ``length``, ``area``, ``percentage``,
    or ``count``, a count with a measure word) and how Chinese and English text state one."""

    kind: str
    chinese: re.Pattern[str]
    english: re.Pattern[str]

    def stated_in(self, text: str, script: str | None = None) -> bool:
        """Whether a text states a quantity of this kind, read as Chinese or English by ``script`` (a sentence
        is read in its passage's) or else by its own letters."""
        return self.stated_in_folded(fold(text), script or writing_script(text))

    def stated_in_folded(self, folded: str, script: str) -> bool:
        """``stated_in`` for a text already folded (``fold``), read as ``script``."""
        if script != CJK:
            return self.english.search(folded) is not None
        return any(numeral_is_a_number(folded, match.start(), match.group()) for match in self.chinese.finditer(folded))


# a word that is a number: digits aside, Chinese numerals with an approximation (几十万, 三千多, 上万) and measure
# words (三座, 一头); a fraction (三成)
_NUMBER_WORD = re.compile(rf"[几数上近约逾]?[{_NUMERALS}]+[余多几]?[{_MEASURES}成]*")


def numeral_is_a_number(folded: str, start: int, matched: str) -> bool:
    """Whether a match that begins with a Chinese numeral (at ``start`` of a folded text) is a number, not
    part of a word written with one: 城六区 (Beijing's six central districts), 三坊七巷 (a street's name),
    一大批 (a great many), 百姓 (the people) state no quantity; 三千多人, 几十万, 十二座 do. Decided by the
    word jieba reads at ``start``; a match that begins otherwise, or is a fraction (百分之五), is a number."""
    if folded[start] not in _NUMERALS or "分之" in matched:
        return True
    return _NUMBER_WORD.fullmatch(_word_at(folded, start)) is not None


def _word_at(folded: str, position: int) -> str:
    """The word (jieba) of a folded text that holds ``position``."""
    for word, start, end in _words_of(folded):
        if start <= position < end:
            return word
    return ""


@lru_cache(maxsize=4096)
def _words_of(folded: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(segmenter().tokenize(folded))


_KINDS = {kind: (re.compile(asked), Quantity(kind, re.compile(chinese), re.compile(english)))
          for kind, (asked, chinese, english) in _QUANTITIES.items()}


def asked_quantity(question: str) -> Quantity | None:
    """The quantity a question asks for, when it is one of the recognised kinds (the first that matches)."""
    folded = fold(question)
    if _ASKS_OTHER.search(folded) or asked_type(question) == TIME:
        return None
    return next((quantity for asked, quantity in _KINDS.values() if asked.search(folded)), None)
