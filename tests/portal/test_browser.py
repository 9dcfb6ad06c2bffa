"""The portal in real headless Chromium (Debian's chromium and chromedriver, driven by Selenium) against the real
portal server, TicketsService, RabbitMQ and PostgreSQL: one request's whole life, a screenshot per step, kept
in the test run's output: $HELPDESK_TEST_OUTPUT/screenshots/<test>/ (default <repo>/test-output/)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest


from .conftest import PASSWORD, link_in, mails


def _replaced(element):
    """`expected_conditions.staleness_of`, also when chromedriver, asked about the old page while the new one
    loads, answers "Node with given id does not belong to the document" instead of "stale element"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def check(_driver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False
    return check

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NEW_PASSWORD = "nové heslo pro prohlížeč"


@pytest.fixture
def portal_server(tickets, portal_config):
    """`helpdesk run portal`'s server (web, relay, mail worker) on a free port; its base URL."""
    from helpdesk.portal.server import start

    from conftest import _delete_queues, event_queues
    from helpdesk.portal.erp_link import PortalErp
    from helpdesk.portal.notifier import PortalNotifier
    from helpdesk.portal.reports_feed import ReportsFeed

    stop = start(portal_config, listen=("127.0.0.1", 0))
    yield f"http://127.0.0.1:{stop.port}"
    stop()
    _delete_queues(portal_config.amqp_uri, event_queues(PortalNotifier, ReportsFeed, PortalErp))


@pytest.fixture
def screenshots(request, capsys) -> Path:
    """This test's folder of the run's output, emptied so it holds this run's shots only; its path is printed
    (also when output is captured) and stored as the test's `screenshots` property (JUnit XML)."""
    base = Path(os.environ.get("HELPDESK_TEST_OUTPUT") or ROOT / "test-output")
    folder = base / "screenshots" / re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with capsys.disabled():
        print(f"\nscreenshots: {folder}")
    request.node.user_properties.append(("screenshots", str(folder)))
    return folder


@pytest.fixture
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=cs"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "cs"})  # Czech pages, as the texts expect
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def _resolved_mail_link(cfg, to: str, action: str, timeout: float = 15.0) -> str:
    """The path (with query) of the `action` link in the resolved mail to `to`, once the mail worker
    has sent it."""
    import email
    import time
    from email import policy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in mails(cfg):
            msg = email.message_from_string(text, policy=policy.default)
            body = msg.get_body(("plain",)).get_content()
            found = re.search(r"http://portal\.test(/tickets/\d+\?do=" + action + r")\s", body)
            if msg["To"] == to and found:
                return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no resolved mail to {to} within {timeout} s")


class Journey:
    """The browser at the portal, with a numbered screenshot after each step."""

    def __init__(self, driver, base: str, folder):
        self.driver, self.base, self.folder, self.shots = driver, base, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def field(self, name: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.NAME, name)

    def fill(self, **values) -> None:
        for name, value in values.items():
            element = self.field(name)
            element.clear()
            element.send_keys(value)

    def choose(self, name: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.field(name)).select_by_value(value)

    def press(self, text: str) -> None:
        """Click the button and wait for the page its form answers with."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()
        WebDriverWait(self.driver, 15).until(_replaced(page))

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def shot(self, step: str) -> None:
        self.shots += 1
        self.driver.save_screenshot(str(self.folder / f"{self.shots:02d}-{step}.png"))

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.fill(email=email, password=password)
        self.press("Přihlásit se")
        assert "/login" not in self.driver.current_url, self.text()


@pytest.mark.postgresql  # one journey is enough: on PostgreSQL, as in production
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_invited_requester_raises_a_request_that_is_solved_confirmed_rated_and_closed(
        portal_server, browser, people, portal_config, rpc, tmp_path, screenshots):
    b = Journey(browser, portal_server, screenshots)
    attachment = tmp_path / "chyba-tiskarny.txt"
    attachment.write_text("E05: došel toner\n", encoding="utf-8")

    # an admin invites a new requester of org-1
    b.sign_in(people["admin"]["email"])
    b.open("/admin/users")
    b.fill(email="nova.zakaznice@example.cz", name="Nová Zákaznice")
    b.driver.find_element("css selector", "input[name=roles][value=requester]").click()
    b.choose("organisation_id", "org-1")
    b.shot("admin-invites")
    b.press("Odeslat pozvánku")
    assert "nova.zakaznice@example.cz" in b.text()
    b.shot("invited")

    # the invitee follows the e-mailed link and sets a password, then signs in with it
    invitation = next(m for m in mails(portal_config) if "nova.zakaznice@example.cz" in m)
    b.driver.delete_all_cookies()
    b.open(link_in(invitation, "invite"))
    b.fill(password=NEW_PASSWORD, password2=NEW_PASSWORD)
    b.shot("sets-password")
    b.press("Uložit heslo")
    assert "Heslo je nastaveno" in b.text(), b.text()
    b.sign_in("nova.zakaznice@example.cz", NEW_PASSWORD)
    b.shot("signed-in")

    # a new request with an attachment
    b.open("/tickets/new")
    b.fill(subject="Tiskárna ve skladu netiskne", description="Hlásí chybu E05, prosím o výměnu toneru.")
    b.choose("priority", "high")
    b.field("attachments").send_keys(str(attachment))
    b.shot("new-request")
    b.press("Odeslat požadavek")
    ticket_path = "/" + b.driver.current_url.split("/", 3)[3]
    assert ticket_path.startswith("/tickets/"), b.driver.current_url
    page = b.text()
    assert "Tiskárna ve skladu netiskne" in page and "chyba-tiskarny.txt" in page and "Přijato" in page
    b.shot("request-raised")

    # the dispatcher finds it in the unassigned queue and assigns the solver
    b.sign_in(people["dispatcher"]["email"])
    b.open("/console?queue=unassigned")
    assert "Tiskárna ve skladu netiskne" in b.text()
    b.shot("dispatcher-queue")
    b.open(ticket_path)
    b.choose("solver_id", people["solver"]["id"])
    b.press("Přiřadit")
    assert browser.find_element("id", "solver").text == people["solver"]["name"]
    b.shot("assigned")

    # the solver starts work, replies publicly and resolves
    b.sign_in(people["solver"]["email"])
    b.open("/console?queue=mine")
    assert "Tiskárna ve skladu netiskne" in b.text()
    b.open(ticket_path)
    b.choose("to_state", "in_progress")
    b.press("Změnit stav")
    b.fill(body="Toner jsme vyměnili, tiskárna znovu tiskne.")
    b.press("Odeslat")
    b.choose("to_state", "resolved")
    b.shot("solver-replied")
    b.press("Změnit stav")
    assert browser.find_element("id", "state").text == "Vyřešeno"
    b.shot("resolved")

    # the requester follows the resolved mail's rate link, sees the reply, rates the solution and confirms it:
    # the ticket is closed
    rate_link = _resolved_mail_link(portal_config, "nova.zakaznice@example.cz", "rate")
    assert rate_link.startswith(ticket_path + "?")
    b.sign_in("nova.zakaznice@example.cz", NEW_PASSWORD)
    b.open(rate_link)
    assert browser.switch_to.active_element.get_attribute("name") == "score"  # the link opens the rating form
    assert "Toner jsme vyměnili, tiskárna znovu tiskne." in b.text()
    b.shot("requester-sees-reply")
    b.driver.find_element("css selector", "input[name=score][value='5']").click()
    b.fill(comment="Rychlé a ochotné")
    b.press("Ohodnotit")
    b.press("Potvrdit vyřešení")
    assert browser.find_element("id", "state").text == "Uzavřeno"
    assert "5/5 – Rychlé a ochotné" in b.text()
    b.shot("closed-and-rated")

    # the tickets service agrees
    staff = {"id": people["admin"]["id"], "name": "Admin", "roles": ["admin"], "organisation_id": None,
             "email": people["admin"]["email"]}
    ticket = rpc.tickets.get_ticket(actor=staff, ticket_id=int(ticket_path.rsplit("/", 1)[1]))
    assert (ticket["state"], ticket["close_reason"], ticket["solver"]["id"]) == \
        ("closed", "resolved", people["solver"]["id"])
    assert ticket["rating"]["score"] == 5 and ticket["requester"]["email"] == "nova.zakaznice@example.cz"
    assert [a["filename"] for a in ticket["attachments"]] == ["chyba-tiskarny.txt"]
    assert len(list(screenshots.glob("*.png"))) == b.shots == 12
