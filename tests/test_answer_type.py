"""The quantity a question asks for, and whether a passage states one (qa.ranking.answer_type)."""

import pytest

from qa.ranking.answer_type import asked_office, asked_quantity, names_office


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("高君宇故居纪念馆每年接待多少游客？", "people"),
        ("上海的常住人口是多少？", "people"),
        ("How many people work at the center?", "people"),
        ("長安小區改造一共花了多少錢？", "money"),  # traditional characters are folded
        ("山西省2024年的地区生产总值是多少？", "money"),
        ("How much money was spent renovating the compound?", "money"),
        ("平遥古城的城墙有多长？", "length"),
        ("观塘明渠下游露天部分有多长？", "length"),
        # 多长 asks for a duration where the question says it is one
        ("刘燕卿担任消委会的申诉专员的任期是多长？", None),
        ("这种龟的寿命有多长？", None),
        ("从北京到上海坐高铁要多长时间？", None),
        ("HAT-P-2b距离地球有多远？", "length"),
        ("How tall is the tower?", "length"),
        ("升庵桂湖的总面积是多少？", "area"),
        ("What was the urbanization rate of Shanxi Province in 2024?", "percentage"),
        ("What percentage of Scotland's voting population failed to vote?", "percentage"),
        ("三坊七巷一共有多少处明清古建筑？", "count"),
        # not a quantity: asks which, where, who or when, or names a word that only looks like one
        ("Which Florida city has the biggest population?", None),
        ("俄罗斯失业率最高的地区是在哪里？", None),
        ("下萨克森邦的农业在何时其就业人数占两成？", None),
        ("省投资促进局的局长是谁？", None),
        ("What is the capital of Australia?", None),
        ("How much do ctenophores eat in a day?", None),
        ("那家企业依靠哪套制度把党建和管理深度结合起来？", None),
        ("适合行走的中巴有哪几种？", None),
    ],
)
def test_asked_quantity(question, kind):
    quantity = asked_quantity(question)
    assert (quantity.kind if quantity else None) == kind


@pytest.mark.parametrize(
    ("question", "text", "stated"),
    [
        ("社区有多少人？", "社区有7266人，由5个居民小区组成。", True),
        ("说勉语的人有多少人？", "说勉语的人约有150万，自称“勉”。", True),
        ("2014年以来进城落户的农业转移人口有多少？", "2014年以来超1.5亿农业转移人口平稳有序进城落户。", True),
        ("高君宇故居纪念馆每年接待多少游客？", "2023年，纪念馆构建沉浸式教育矩阵，开发系列特色课程。", False),
        ("长安小区改造一共花了多少钱？", "2023年实施改造后，小区增加道闸系统。", False),
        ("长安小区改造一共花了多少钱？", "改造共投入资金1200万元。", True),
        ("How much money was spent?", "The renovation cost $12 million.", True),
        ("How much money was spent?", "The renovation began in 2019 and took 3 years.", False),
        ("升庵桂湖的总面积是多少？", "桂湖倚新都城墙内侧而建，总面积46,600m²。", True),
        ("女神响尾蛇最长的距离是多少？", "有纪录以来体型最长的计有89.8公分长。", True),
        ("性别比例大约是？", "性别比例多达约1,161。", True),
        ("What percentage of voters did not vote?", "原因是32.9%的选民并未或未能投票。", True),
        # English names what it counts in many ways: any number states a count of people there
        ("2010年杰克逊维尔市的人口是多少?", "with a population of 1,345,596 in 2010.", True),
        ("有多少名防守球员入选了职业碗？", "boasting four Pro Bowl selections.", True),
        ("屈臣氏酒窖在香港设有多少家分店？", "现时在香港共有28间分店。", True),
        ("评审流程分为几个阶段？", "评审流程：初审、二审、三审与决审四阶段。", True),
        ("福州一共有多少处明清古建筑？", "这里是福州的历史文化街区，古建筑保存完好。", False),
        # a Chinese numeral inside a word is no number: a name (城六区, 三坊七巷), 一大批, 百姓
        ("上海的常住人口是多少？", "目前城六区常住人口比2014年下降15%；", False),
        ("上海的常住人口是多少？", "目前城六区常住人口约1100万人。", True),
        ("三坊七巷一共有多少处明清古建筑？", "三坊七巷历史文化街区保留着大量明清古建筑。", False),
        ("三坊七巷一共有多少处明清古建筑？", "由于他的重视，三坊七巷免遭拆除，一大批历史文物古迹保留至今。", False),
        ("三坊七巷一共有多少处明清古建筑？", "三坊七巷保留着二百余座明清古建筑。", True),
        ("社区有多少人？", "一头连着百姓生活冷暖。", False),
        ("社区有多少人？", "社区有三千多人。", True),
        ("社区有多少人？", "辖区内住着几十万人。", True),
        ("女性的比例是多少？", "女性约占三成。", True),
        ("女性的比例是多少？", "女性占百分之五十二。", True),
        ("平遥古城的城墙有多长？", "在山西平遥古城，习近平总书记指出，要敬畏历史、敬畏文化。", False),
        ("平遥古城的城墙有多长？", "平遥古城城墙周长6163米。", True),
    ],
)
def test_stated_in(question, text, stated):
    assert asked_quantity(question).stated_in(text) is stated


@pytest.mark.parametrize(
    ("question", "office"),
    [
        ("和顺县县长是谁？", "县长"),
        ("太原市委书记是谁？", "市委书记"),
        ("谁是太原市委书记？", "市委书记"),
        ("省投资促进局的局长是谁？", "局长"),
        ("IPCC 现任主席是谁？", "主席"),
        ("董事長是誰？", "董事长"),  # traditional characters are folded
        # not an office: other roles are often said otherwise ("由…所著" for 作者), and names are no office
        ("《论自由》的作者是谁？", None),
        ("罗克鲁瓦战役中法国军队的统帅是谁？", None),
        ("李肖娜是谁？", None),
        ("县长做了什么？", None),
        ("Who is the mayor of Taiyuan?", None),
    ],
)
def test_asked_office(question, office):
    assert asked_office(question) == office


def test_a_passage_answers_who_holds_an_office_only_if_it_names_it():
    text = "晋中市人大常委会副主任、和顺县委书记许利伟表示，要牢记领袖嘱托。"
    assert not names_office("县长", text)
    assert names_office("县委书记", text)
    assert names_office("县长", "他表示，要牢记领袖嘱托。", "和顺县县长访谈")  # its heading names it
    assert names_office("县长", "The county head of Heshun said so.")  # another script is not judged
