"""The web page (qa/http/static/index.html) in a real browser against a real server.

Debian's Chromium, driven by Selenium through Debian's ChromeDriver (the same build as the browser,
so driver and browser always match; both paths are given, so Selenium Manager never runs or downloads).
One server process (the bundled model on ``small_corpus_file``, six passages of the bundled page) and one
headless browser serve the whole module; the stopped-server test runs last and stops that server.
Screenshots go to ``test-artifacts/browser/`` (git-ignored; the run's summary names the folder).
Without /usr/bin/chromium and /usr/bin/chromedriver every test here is skipped with a reason saying
how to install them, and the end of the run says so.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import urllib.parse
from pathlib import Path

import pytest
from conftest import COMMUNITY_PARAGRAPH
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from qa.ranking.confidence import ANSWERABLE_CONFIDENCE, ANSWERABLE_DEPTH
from tests.test_server_process import ServerProcess, server_environment

# Selenium Manager is skipped because the driver path is given; offline mode keeps it from fetching anyway.
os.environ.setdefault("SE_OFFLINE", "true")

PAGE = Path(__file__).resolve().parent.parent / "qa" / "http" / "static" / "index.html"
CHROMIUM_ARGUMENTS = (
    "--headless",
    "--no-sandbox",  # the suite runs as root on CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's network is closed: no update or sync checks
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,900",
    "--lang=zh-CN",  # a Chinese browser: the page should start in Chinese
)
WAIT_SECONDS = 60  # for an answer from the real model on two shared cores; a hang fails, it never waits forever

CHINESE_QUESTION = "翼城县委书记是谁？"
CHINESE_ANSWER = "高雅铭"
ENGLISH_QUESTION = "What did Gao Yaming say?"
SECOND_QUESTION = "小店区纪委副书记是谁？"
UNANSWERABLE_QUESTION = "How do I bake sourdough bread?"


# -- the server and the browser, one of each for the module --------------------------------------------
class LiveServer:
    """``server.py`` over the small corpus; restartable (from its snapshot) after a test stops it."""

    def __init__(self, index_dir: Path, corpus: Path) -> None:
        self.arguments = ["--port", "0", "--index-dir", str(index_dir), "--corpus", str(corpus)]
        self.process: ServerProcess | None = None

    def ensure_running(self) -> ServerProcess:
        if self.process is None or self.process.process.poll() is not None:
            self.process = ServerProcess(self.arguments, server_environment())
            self.process.wait_until_serving()
        return self.process

    @property
    def url(self) -> str:
        return self.ensure_running().base_url

    def ask(self, question: str) -> dict:
        """The API's own answer, as the page asks it (top_k 5, hybrid)."""
        status, body, _ = self.ensure_running().post_json("/api/ask", {"question": question, "top_k": 5})
        assert status == 200, body
        return body

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stop() == 0
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


@pytest.fixture(scope="module")
def live_server(chromium_paths, tmp_path_factory, small_corpus_file, bundled_model_folder):
    server = LiveServer(tmp_path_factory.mktemp("web-page-index"), small_corpus_file)
    try:
        server.ensure_running()
        yield server
    finally:
        server.kill()


@pytest.fixture
def server(live_server) -> LiveServer:
    live_server.ensure_running()
    return live_server


@pytest.fixture(scope="module")
def chrome(chromium_paths, tmp_path_factory):
    browser_path, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser_path)
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, checked after each test
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    driver.set_script_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome, browser_artifacts, request):
    """The module's browser on a clean slate (no stored language or key); a failed test leaves a screenshot.

    After each test the page's console must hold no uncaught JavaScript error (failed requests to a
    stopped server or a 401 are logged by the browser too; those are expected and not errors of the page).
    """
    chrome.get_log("browser")  # drop what earlier tests left
    yield chrome
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        chrome.save_screenshot(str(browser_artifacts / f"FAILED-{request.node.name}.png"))
    if chrome.current_url.startswith("http"):
        chrome.execute_script("localStorage.clear(); sessionStorage.clear();")
    uncaught = [entry["message"] for entry in chrome.get_log("browser") if "Uncaught" in entry["message"]]
    assert not uncaught, f"JavaScript errors on the page: {uncaught}"


# -- helpers -------------------------------------------------------------------------------------------
def wait(browser, condition, message: str, seconds: float = WAIT_SECONDS):
    try:
        return WebDriverWait(browser, seconds, poll_frequency=0.1).until(lambda _: condition())
    except TimeoutException:
        pytest.fail(f"{message} (waited {seconds} s); results: {results_html(browser)[:2000]}")


def results_html(browser) -> str:
    return browser.execute_script("return document.getElementById('results').outerHTML")


def answered(browser, question: str) -> bool:
    """The results region shows the finished answer (or error) for ``question``."""
    return browser.execute_script(
        """const results = document.getElementById('results');
        return results.dataset.question === arguments[0] && results.getAttribute('aria-busy') === 'false'
            && results.querySelector('article, .notice') !== null;""",
        question,
    )


def ask(browser, question: str) -> None:
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question, Keys.ENTER)


def ask_and_wait(browser, question: str) -> None:
    ask(browser, question)
    wait(browser, lambda: answered(browser, question), f"no answer shown for {question!r}")


def cards(browser) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#results article.result")


def address_question(browser) -> str | None:
    query = urllib.parse.urlparse(browser.current_url).query
    return urllib.parse.parse_qs(query).get("q", [None])[0]


def expected_best(answer: dict) -> dict | None:
    """The result the page must feature: the first of the first three reaching the answerable threshold."""
    if not answer["answerable"]:
        return None
    return next(hit for hit in answer["results"][:ANSWERABLE_DEPTH] if hit["confidence"] >= ANSWERABLE_CONFIDENCE["hybrid"])


def confidence_word(value: float) -> str:
    return "high" if value >= 0.75 else "medium" if value >= ANSWERABLE_CONFIDENCE["hybrid"] else "low"


def check_answer_shown(browser, answer: dict) -> None:
    """The page shows the API's answer: the best result first and marked, every confidence in words."""
    shown = cards(browser)
    assert len(shown) == len(answer["results"])
    by_id = {hit["id"]: hit for hit in answer["results"]}
    assert {card.get_attribute("data-id") for card in shown} == set(by_id)
    for card in shown:
        hit = by_id[card.get_attribute("data-id")]
        badge = card.find_element(By.CSS_SELECTOR, ".badge.confidence")
        assert confidence_word(hit["confidence"]) in badge.get_attribute("class").split()
        assert f"{hit['confidence']:.2f}"[:3] in badge.get_attribute("title")  # the number on hover
    best = expected_best(answer)
    if best is None:
        assert browser.find_elements(By.CSS_SELECTOR, "#results .notice.no-answer")
        assert not browser.find_elements(By.CSS_SELECTOR, "#results .result.top, #results mark.answer")
        return
    top = shown[0]
    assert top.get_attribute("data-id") == best["id"]
    assert "top" in top.get_attribute("class").split()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .result.top")) == 1
    assert top.find_element(By.CSS_SELECTOR, "mark.answer").text == best["highlights"][0]["text"].strip()
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .notice")


# -- the tests -----------------------------------------------------------------------------------------
def test_page_thresholds_match_the_service_confidence_module():
    """The page paints answers by the same threshold the service uses for ``answerable`` (no browser needed)."""
    page = PAGE.read_text(encoding="utf-8")
    declared = re.search(r"const ANSWERABLE_CONFIDENCE = \{([^}]*)\};", page)[1]
    thresholds = {mode: float(value) for mode, value in re.findall(r"(\w+): ([\d.]+)", declared)}
    assert thresholds == ANSWERABLE_CONFIDENCE
    assert int(re.search(r"const ANSWERABLE_DEPTH = (\d+);", page)[1]) == ANSWERABLE_DEPTH
    assert float(re.search(r"const HIGH_CONFIDENCE = ([\d.]+);", page)[1]) == 0.75  # README and legend say 0.75


def test_chinese_question_shows_the_top_answer_with_its_answering_sentence_marked(browser, server, browser_artifacts):
    browser.get(server.url + "/")
    assert browser.execute_script("return document.documentElement.lang") == "zh-CN"  # follows the browser
    assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == "问题"
    wait(browser, lambda: browser.find_element(By.ID, "health").text, "no index summary in the footer")

    ask_and_wait(browser, CHINESE_QUESTION)

    answer = server.ask(CHINESE_QUESTION)
    check_answer_shown(browser, answer)
    top = cards(browser)[0]
    assert CHINESE_ANSWER in top.find_element(By.CSS_SELECTOR, "mark.answer").text
    assert top.find_element(By.CSS_SELECTOR, ".badge.best").text == "最佳答案"
    assert top.find_element(By.CSS_SELECTOR, ".badge.confidence .word").text == "高置信度"
    assert address_question(browser) == CHINESE_QUESTION  # the address is a permalink to this question
    browser.save_screenshot(str(browser_artifacts / "chinese-answer.png"))


def test_language_switch_is_remembered_and_an_english_question_is_answered_in_english(
    browser, server, browser_artifacts
):
    browser.get(server.url + "/")
    switch = browser.find_element(By.ID, "language")
    assert switch.text == "English"
    switch.click()
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == "Question"
    assert browser.find_element(By.ID, "submit").text == "Ask"

    browser.refresh()  # the choice is remembered over the browser's language
    assert browser.find_element(By.ID, "language").text == "中文"
    ask_and_wait(browser, ENGLISH_QUESTION)
    check_answer_shown(browser, server.ask(ENGLISH_QUESTION))
    assert browser.find_element(By.CSS_SELECTOR, ".badge.confidence .word").text.endswith("confidence")
    browser.save_screenshot(str(browser_artifacts / "english-answer.png"))

    browser.find_element(By.ID, "language").click()  # switching re-translates what is already shown
    assert browser.find_element(By.CSS_SELECTOR, ".badge.confidence .word").text.endswith("置信度")
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    assert browser.execute_script("return document.documentElement.lang") == "zh-CN"
    choices = browser.execute_script(
        "return [['en-US', 'zh-CN'], ['zh-TW'], ['fr-FR', 'de'], []].map(qaPage.preferredLanguage)"
    )
    assert choices == ["en", "zh", "en", "en"]


def test_a_question_the_documents_cannot_answer_shows_no_confident_answer(browser, server, browser_artifacts):
    answer = server.ask(UNANSWERABLE_QUESTION)
    assert not answer["answerable"], "precondition: the service finds no answer to this question"
    browser.get(server.url + "/")

    ask_and_wait(browser, UNANSWERABLE_QUESTION)

    notice = browser.find_element(By.CSS_SELECTOR, "#results .notice.no-answer")
    assert "没有把握的答案" in notice.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results .result.top, #results mark.answer")
    shown = cards(browser)
    assert len(shown) == len(answer["results"])
    assert all("weak" in card.get_attribute("class").split() for card in shown)
    check_answer_shown(browser, answer)
    browser.save_screenshot(str(browser_artifacts / "no-confident-answer.png"))


def test_permalink_asks_on_load_and_back_and_forward_ask_again(browser, server):
    browser.get(server.url + "/?" + urllib.parse.urlencode({"q": CHINESE_QUESTION}))
    wait(browser, lambda: answered(browser, CHINESE_QUESTION), "the permalink did not ask its question on load")
    assert browser.find_element(By.ID, "question").get_attribute("value") == CHINESE_QUESTION
    assert CHINESE_ANSWER in browser.find_element(By.CSS_SELECTOR, ".result.top mark.answer").text

    ask_and_wait(browser, SECOND_QUESTION)
    assert address_question(browser) == SECOND_QUESTION

    browser.back()
    wait(browser, lambda: answered(browser, CHINESE_QUESTION), "going back did not show the first question again")
    assert browser.find_element(By.ID, "question").get_attribute("value") == CHINESE_QUESTION
    browser.forward()
    wait(browser, lambda: answered(browser, SECOND_QUESTION), "going forward did not show the second question")
    check_answer_shown(browser, server.ask(SECOND_QUESTION))


# The first /api/ask response is held back (after the server has answered it) until the test releases
# it, so the first answer arrives after the second: the page must have aborted it and must not show it.
HOLD_FIRST_ASK = """
const realFetch = window.fetch;
window.heldAsk = { waiting: false, release: null, abortedBeforeRelease: null };
window.fetch = async function (url, init) {
  if (!String(url).includes('api/ask') || window.heldAsk.waiting || window.heldAsk.release) {
    return realFetch(url, init);
  }
  window.heldAsk.waiting = true;
  const response = await realFetch(url, init);
  await new Promise((resolve) => { window.heldAsk.release = resolve; });
  window.heldAsk.abortedBeforeRelease = init.signal.aborted;
  return response;
};
"""


def test_a_second_question_cancels_the_first_and_only_its_answer_is_shown(browser, server):
    browser.get(server.url + "/")
    browser.execute_script(HOLD_FIRST_ASK)

    ask(browser, CHINESE_QUESTION)
    wait(browser, lambda: browser.execute_script("return window.heldAsk.release !== null"), "the first ask never left")
    ask_and_wait(browser, SECOND_QUESTION)
    second = server.ask(SECOND_QUESTION)
    check_answer_shown(browser, second)

    browser.execute_script("window.heldAsk.release()")
    wait(browser, lambda: browser.execute_script("return window.heldAsk.abortedBeforeRelease !== null"), "no release")
    browser.execute_script("return new Promise((resolve) => setTimeout(resolve, 300))")  # let a late answer land
    assert browser.find_element(By.ID, "results").get_attribute("data-question") == SECOND_QUESTION
    check_answer_shown(browser, second)
    assert address_question(browser) == SECOND_QUESTION
    assert browser.execute_script("return window.heldAsk.abortedBeforeRelease") is True  # the request was aborted


def test_keyboard_alone_reaches_similar_passages_and_the_whole_document(browser, server, browser_artifacts):
    browser.get(server.url + "/")
    labels = browser.execute_script(
        "return [...document.querySelectorAll('input, select')].map((field) => [field.id, field.labels.length])"
    )
    assert labels and all(count >= 1 for _, count in labels), labels
    assert browser.find_element(By.ID, "results").get_attribute("aria-live") == "polite"
    icon = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const image = new Image();
        image.onload = () => done([image.naturalWidth, image.naturalHeight]);
        image.onerror = () => done(null);
        image.src = document.querySelector('link[rel=icon]').href;"""
    )
    assert icon and icon[0] > 0, "the favicon does not load"

    browser.execute_script("document.activeElement.blur()")
    ActionChains(browser).send_keys("/").perform()  # "/" jumps to the question box
    assert browser.switch_to.active_element.get_attribute("id") == "question"
    ActionChains(browser).send_keys(CHINESE_QUESTION, Keys.ENTER).perform()
    wait(browser, lambda: answered(browser, CHINESE_QUESTION), "no answer after asking from the keyboard")
    top_id = cards(browser)[0].get_attribute("data-id")

    ActionChains(browser).send_keys(Keys.TAB, Keys.TAB, Keys.TAB).perform()  # mode, Ask, then the top card
    similar_button = browser.switch_to.active_element
    assert "similar-button" in similar_button.get_attribute("class")
    similar_button.send_keys(Keys.ENTER)
    assert similar_button.get_attribute("aria-expanded") == "true"
    panel = browser.find_element(By.ID, similar_button.get_attribute("aria-controls"))
    wait(browser, lambda: panel.find_elements(By.CSS_SELECTOR, "li[data-id]"), "no similar passages listed")
    similar_ids = [item.get_attribute("data-id") for item in panel.find_elements(By.CSS_SELECTOR, "li[data-id]")]
    assert similar_ids and top_id not in similar_ids

    ActionChains(browser).send_keys(Keys.TAB).perform()
    document_button = browser.switch_to.active_element
    assert "document-button" in document_button.get_attribute("class")
    document_button.send_keys(Keys.ENTER)
    dialog = browser.find_element(By.ID, "document")
    wait(browser, lambda: dialog.find_elements(By.CSS_SELECTOR, "p.current"), "the whole document did not open")
    current = dialog.find_element(By.CSS_SELECTOR, "p.current")
    assert current.get_attribute("data-id") == top_id and current.get_attribute("aria-current") == "true"
    assert len(dialog.find_elements(By.CSS_SELECTOR, "p[data-id]")) > 1
    browser.save_screenshot(str(browser_artifacts / "whole-document.png"))
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait(browser, lambda: not dialog.get_attribute("open"), "Escape did not close the document")
    assert browser.switch_to.active_element == document_button  # focus returns where it was


@pytest.fixture
def protected_server(library):
    """The app in this process over real HTTP, reads protected by an API key (the fake embedder: no model)."""
    from werkzeug.serving import make_server

    from qa.http.api import create_app

    app = create_app({"api_key": "page-test-key", "protect_reads": True}, library=library)
    http_server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http_server.server_port}"
    finally:
        http_server.shutdown()
        thread.join(timeout=10)


def test_a_401_shows_the_api_key_field_and_the_key_is_sent_as_a_bearer_token(
    browser, protected_server, browser_artifacts
):
    question = COMMUNITY_PARAGRAPH[:20]
    browser.get(protected_server + "/")
    key_panel = browser.find_element(By.ID, "key-panel")
    assert not key_panel.is_displayed()

    ask(browser, question)
    wait(browser, lambda: key_panel.is_displayed(), "no API-key field after a 401")
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=api-key]").is_displayed()
    browser.save_screenshot(str(browser_artifacts / "api-key-needed.png"))

    browser.switch_to.active_element.send_keys("wrong-key", Keys.ENTER)
    wait(browser, lambda: key_panel.is_displayed() and "拒绝" in browser.find_element(By.ID, "key-help").text,
         "a refused key was not reported")

    browser.find_element(By.ID, "api-key").send_keys("page-test-key", Keys.ENTER)
    wait(browser, lambda: answered(browser, question) and cards(browser), "no answer after entering the key")
    assert not key_panel.is_displayed()
    assert cards(browser)[0].get_attribute("data-id").startswith("taiyuan:")
    assert browser.execute_script("return sessionStorage.getItem('qa.apiKey')") == "page-test-key"


def test_a_stopped_or_silent_server_shows_a_message_instead_of_hanging(browser, live_server, browser_artifacts):
    """Runs last in this module: it stops the shared server."""
    browser.get(live_server.url + "/")
    ask_and_wait(browser, CHINESE_QUESTION)
    port = int(urllib.parse.urlparse(live_server.url).port)

    live_server.stop()
    ask(browser, SECOND_QUESTION)
    wait(browser, lambda: answered(browser, SECOND_QUESTION), "no message after asking a stopped server", 30)
    alert = browser.find_element(By.CSS_SELECTOR, "#results .notice.error[role=alert]")
    assert "无法连接服务器" in alert.text
    assert alert.find_element(By.TAG_NAME, "button").text == "重试"
    assert not cards(browser)
    browser.save_screenshot(str(browser_artifacts / "server-stopped.png"))

    # a server that accepts the connection and never answers: the page gives up after its timeout
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", port))
        silent.listen(8)
        browser.execute_script("qaPage.timeoutMs = 1500")
        browser.find_element(By.CSS_SELECTOR, "#results .notice.error button").click()  # "try again"
        wait(browser, lambda: "1.5" in browser.find_element(By.ID, "results").text, "no timeout message", 30)
        assert "没有回应" in browser.find_element(By.CSS_SELECTOR, "#results .notice.error").text
        assert browser.find_element(By.ID, "results").get_attribute("aria-busy") == "false"
