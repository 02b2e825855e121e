"""The review bento as a real `bentoml serve` process beside a real broker, the real safety bento and
MLflow, driven through its JSON API and through headless chromium (Debian's chromium and chromedriver,
selenium): flags published on the broker reach the queue (a duplicate once, a malformed one
dead-lettered with the reason); a reviewer signs in and approves with the keyboard only; an edit with
PII is refused with the findings; reject; 403 for a key without the reviewer role; a second decision
is a 409 that changes nothing. Each decision pins (approve, edit) the answer in the router's cache
database, adds a row to the MLflow dataset and publishes its outcome (feedback.scored, "review")."""

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from bentos.review.dataset import TABLE
from ragyard.events.publisher import amqp_message
from ragyard.events.schema import AnswerFlagged, FeedbackScored, decode, encode
from ragyard.events.topology import DEAD_REASON_HEADER, FEEDBACK, TOPOLOGY
from ragyard.settings import MlflowSettings, ReviewSettings, SafetySettings, Settings, settings_env
from ragyard.tracking import mlflow_client
from router.chat import Citation
from router.keys import KeyStore
from router.pinned import PinnedAnswers
from router.state import database
from tests.support.broker import drain, running_broker
from tests.support.cli import ragyard
from tests.support.network import free_port
from tests.support.stack import Stack

VERSION = "docs:v7"
CITATION = Citation(1, "howto/sorting.rst", "Sorting", "c1", "d1", 0.8).wire()


def flag(question: str | None, age_s: float, **fields) -> AnswerFlagged:
    defaults = {
        "reason": "output_safety",
        "answer": f"An answer to: {question}" if question else None,
        "citations": [CITATION],
        "action": "flag",
        "categories": ["toxicity"],
        "model": "qwen-0.5b",
        "route": {"model": "qwen-0.5b", "policy": "learned", "reason": "cheapest good enough"},
        "index_version": VERSION,
    }
    return AnswerFlagged(
        producer="router",
        trace_id=uuid.uuid4().hex,
        question=question,
        occurred_at=time.time() - age_s,
        **{**defaults, **fields},
    )


# The keyboard test's flag waits longest: it leads the queue.
KEYBOARD = flag(
    "How do I sort a list in place?",
    3600,
    answer="Call list.sort(); it sorts in place, in 3 passes.",
    action="review",
    unsupported=["3"],
)
EDIT = flag("How do I read a file line by line?", 1800)
REJECT = flag("What does the walrus operator do?", 1200)
TWICE = flag("How do I copy a dict?", 900)
NO_QUESTION = flag(None, 600, reason="negative_feedback", citations=[], categories=[], score=-1.0)
FLAGS = [KEYBOARD, EDIT, REJECT, TWICE, NO_QUESTION]


@dataclass
class Review:
    url: str
    settings: Settings
    amqp_url: str
    reviewer_key: str
    plain_key: str

    def api(self, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        key = self.reviewer_key if key is None else key
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, f"{self.url}/v1{path}", headers=headers, timeout=60, **kwargs)

    def decide(self, review_id: str, decision: str, **fields) -> httpx.Response:
        return self.api("POST", f"/reviews/{review_id}/decision", json={"decision": decision, **fields})

    def pinned(self, question: str) -> str | None:
        store = PinnedAnswers(database(self.settings, "cache"))
        try:
            found = store.find(question, VERSION)
            return found.text if found else None
        finally:
            store.close()


async def publish(url: str, bodies: list[tuple[str, str, bytes]]) -> None:
    """(message id, type, body) onto the events exchange, confirmed, the topology declared first."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await TOPOLOGY.declare(channel)
        for message_id, event_type, body in bodies:
            await exchange.publish(amqp_message(message_id, event_type, body), event_type)


def wait_for(check, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[Review]:
    root = tmp_path_factory.mktemp("review")
    with running_broker(root / "broker") as broker, Stack(root) as stack:
        safety_port = free_port()
        settings = Settings(
            home=root / "home",
            broker=broker.config,
            mlflow=MlflowSettings(url=mlflow_server, run_local=False),
            safety=SafetySettings(port=safety_port),
            review=ReviewSettings(experiment=f"reviewed-answers-{uuid.uuid4().hex[:8]}"),
        )
        env = {**settings_env(settings), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        stack.start(
            stack.bento_spec("bentos.safety.service:Safety", port=safety_port, timeout_s=240),
            stack.bento_spec("bentos.review.service:Review", home=settings.home, env=env),
        )
        made = ragyard("keys", "create", "--name", "rev", "--role", "reviewer", "--json", env={**os.environ, **env})
        assert made.returncode == 0, made.stderr
        keys = KeyStore(database(settings, "keys"))
        _, plain = keys.create("plain")
        keys.close()
        amqp_url = broker.config.amqp_url
        malformed = json.dumps({"type": "answer.flagged", "id": "bad-1", "producer": "router"}).encode()
        bodies = [(f.id, f.type, encode(f)) for f in FLAGS] + [(EDIT.id, EDIT.type, encode(EDIT))]  # one twice
        asyncio.run(publish(amqp_url, [*bodies, ("bad-1", "answer.flagged", malformed)]))
        yield Review(stack.url("review"), settings, amqp_url, json.loads(made.stdout)["key"], plain)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    # The system chromedriver, named: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def press(driver: WebDriver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def press_to_leave(driver: WebDriver, *keys: str) -> None:
    """Press keys that load another page, and wait until it has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    press(driver, *keys)
    left(driver, page)


def left(driver: WebDriver, page: WebElement) -> None:
    """Wait until a new document has replaced `page`'s. While it goes, chromedriver may answer with an
    inspector error ("Node ... does not belong to the document") rather than a stale element: asked again."""
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(expected_conditions.staleness_of(page))


def sign_in(driver: WebDriver, review: Review, key: str) -> None:
    driver.get(f"{review.url}/login")
    driver.delete_all_cookies()
    driver.get(f"{review.url}/login")
    press_to_leave(driver, key, Keys.ENTER)  # the key field has the focus: typed, then Enter


def test_flags_from_the_broker_queue_oldest_first_once_each_and_malformed_ones_are_dead_lettered(review, browser):
    listed = wait_for(
        lambda: (r := review.api("GET", "/reviews").json())["pending"] == len(FLAGS) and r, "the flags in the queue"
    )
    assert [r["id"] for r in listed["reviews"]] == [f.id for f in FLAGS]  # oldest first, EDIT once
    first = listed["reviews"][0]
    assert first["question"] == KEYBOARD.question and first["citations"] == [CITATION]
    assert first["route"]["policy"] == "learned" and first["categories"] == ["toxicity"]
    dead = asyncio.run(drain(review.amqp_url, TOPOLOGY.dead_letters))
    reasons = {m.message_id: (m.headers or {}).get(DEAD_REASON_HEADER, "") for m in dead}
    assert reasons.keys() == {"bad-1"} and str(reasons["bad-1"]).startswith("malformed:")

    sign_in(browser, review, review.reviewer_key)
    assert browser.current_url == f"{review.url}/reviews"
    rows = browser.find_elements(By.CSS_SELECTOR, "a.row")
    assert [row.text for row in rows][:4] == [f.question for f in FLAGS[:4]]
    assert "1 h" in browser.find_element(By.TAG_NAME, "tbody").text  # the keyboard flag's age
    # The session cookie: HttpOnly and SameSite=Strict.
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_a_key_without_the_reviewer_role_is_refused(review, browser):
    refused = review.api("GET", "/reviews", key=review.plain_key)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert review.api("GET", "/reviews", key="").status_code == 401
    sign_in(browser, review, review.plain_key)
    assert "may not review" in browser.find_element(By.ID, "message").text
    assert browser.find_elements(By.CSS_SELECTOR, "a.row") == []
    # No session: the queue sends to the login page; a forged cookie is no session.
    browser.add_cookie({"name": "ragyard_review", "value": "forged"})
    browser.get(f"{review.url}/reviews")
    assert browser.current_url == f"{review.url}/login"


def test_a_reviewer_approves_with_the_keyboard_only(review, browser):
    sign_in(browser, review, review.reviewer_key)
    press_to_leave(browser, "j", Keys.ENTER)  # the first row (the oldest flag), opened
    assert browser.current_url == f"{review.url}/reviews/{KEYBOARD.id}"
    assert browser.find_element(By.ID, "question").text == KEYBOARD.question
    assert "withheld from the user" in browser.find_element(By.ID, "safety").text
    assert browser.find_element(By.ID, "unsupported").text == "3"
    press_to_leave(browser, "a")
    # On to the next review, saying what happened to this one.
    assert browser.current_url.startswith(f"{review.url}/reviews/{EDIT.id}?decided=")
    assert "approved" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    decided = review.api("GET", f"/reviews/{KEYBOARD.id}").json()
    assert decided["status"] == "approved" and decided["final_answer"] == KEYBOARD.answer
    assert review.pinned(KEYBOARD.question) == KEYBOARD.answer
    # The approved review's form sent again (a second tab, a resubmission): a 409 page, nothing changed.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    csrf = browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] input[name=csrf]").get_attribute("value")
    again = httpx.post(
        f"{review.url}/reviews/{KEYBOARD.id}/decision", data={"decision": "reject", "csrf": csrf}, cookies=cookies
    )
    assert again.status_code == 409 and "already decided (approved" in again.text
    assert review.api("GET", f"/reviews/{KEYBOARD.id}").json()["status"] == "approved"
    # Shortcuts do nothing inside a text field: typing "a" into the edit box approves nothing.
    browser.find_element(By.ID, "edited").click()
    press(browser, "a")
    assert browser.current_url.startswith(f"{review.url}/reviews/{EDIT.id}")
    assert review.api("GET", f"/reviews/{EDIT.id}").json()["status"] == "pending"


def test_an_edit_that_fails_output_safety_is_refused_with_the_findings_and_a_safe_one_is_pinned(review, browser):
    sign_in(browser, review, review.reviewer_key)
    # A form posted without the session's CSRF token (another site's, say) changes nothing.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    forged = httpx.post(f"{review.url}/reviews/{EDIT.id}/decision", data={"decision": "reject"}, cookies=cookies)
    assert forged.status_code == 403 and "form expired" in forged.text
    browser.get(f"{review.url}/reviews/{EDIT.id}")
    press(browser, "e")  # to the edit box
    box = browser.switch_to.active_element
    assert box.get_attribute("id") == "edited"
    box.clear()
    box.send_keys("Mail dana.whitfield@example.com for the answer.")
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "save-edit").click()
    left(browser, page)
    assert "refused the edit" in browser.find_element(By.ID, "error").text
    findings = browser.find_element(By.ID, "findings").text
    assert "pii: EMAIL_ADDRESS" in findings and "dana.whitfield@example.com" in findings
    assert review.api("GET", f"/reviews/{EDIT.id}").json()["status"] == "pending"
    assert review.pinned(EDIT.question) is None

    good = "Iterate over the open file object: `for line in f:` reads one line at a time."
    edited = review.decide(EDIT.id, "edit", answer=good, comment="clearer")
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["review"]["status"] == "edited" and body["pinned"] and body["dataset_run_id"]
    assert review.pinned(EDIT.question) == good


def test_reject_double_submission_and_outcomes(review):
    """Also reads the outcomes of every decision this module's tests made (they run in file order)."""
    rejected = review.decide(REJECT.id, "reject", comment="wrong")
    assert rejected.status_code == 200 and rejected.json()["pinned"] is False
    assert review.pinned(REJECT.question) is None

    first = review.decide(TWICE.id, "approve")
    second = review.decide(TWICE.id, "reject")
    assert first.status_code == 200
    assert second.status_code == 409 and "already decided (approved" in second.json()["error"]["message"]
    assert review.api("GET", f"/reviews/{TWICE.id}").json()["status"] == "approved"

    refused = review.decide(NO_QUESTION.id, "approve")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "decision"
    assert review.api("GET", "/reviews").json()["pending"] == 1  # NO_QUESTION only
    # The queue on /metrics: its gauges are read again every few seconds.
    metrics = wait_for(
        lambda: "ragyard_review_pending 1.0" in (text := httpx.get(f"{review.url}/metrics", timeout=30).text) and text,
        "the queue's gauges",
    )
    assert 'ragyard_review_decisions_total{decision="approve"} 2.0' in metrics
    oldest = re.search(r"^ragyard_review_oldest_age_seconds (\S+)$", metrics, re.MULTILINE)
    assert oldest and float(oldest[1]) >= 600  # NO_QUESTION's age

    # One outcome per decision for the router's training, approve 1, edit 0.5, reject 0.
    messages = asyncio.run(drain(review.amqp_url, TOPOLOGY.queue(FEEDBACK)))
    outcomes = {e.trace_id: e.value for e in map(decode, (m.body for m in messages)) if isinstance(e, FeedbackScored)}
    assert len(messages) == 4
    assert outcomes == {KEYBOARD.trace_id: 1.0, EDIT.trace_id: 0.5, REJECT.trace_id: 0.0, TWICE.trace_id: 1.0}

    # One dataset row per decision in MLflow.
    client = mlflow_client(review.settings.mlflow.url)
    experiment = client.get_experiment_by_name(review.settings.review.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["decision"] for r in runs) == ["approve", "approve", "edit", "reject"]
    edit_run = next(r for r in runs if r.data.params["decision"] == "edit")
    table = json.loads(Path(client.download_artifacts(edit_run.info.run_id, TABLE)).read_text())
    row = dict(zip(table["columns"], table["data"][0], strict=True))
    assert (
        row["question"] == EDIT.question and row["final_answer"].startswith("Iterate") and row["comment"] == "clearer"
    )
