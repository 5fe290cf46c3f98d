"""The kind of answer a question asks for (a time, a number), and whether a sentence offers one.

"广三铁路在哪年建成？" is answered by the sentence that holds a year ("广三铁路于1903年筑成"), not
by the one that names the railway most often; "How many people live in the community?" by the
one with a number in it. Only these two kinds are recognised: they are asked often (a sixth of
cmrc2018's questions), and a sentence's offer of them can be seen without a reader model
(digits, Chinese numerals before a measure word, 年/月/日, month names). "Who" and "where" are not:
telling a name or a place in a sentence would need one.
"""

from __future__ import annotations

import re

from qa.vectors.lexical import fold

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
    if kind is None:
        return False
    pattern = _OFFERS_TIME if kind == TIME else _OFFERS_NUMBER
    return pattern.search(fold(sentence)) is not None
