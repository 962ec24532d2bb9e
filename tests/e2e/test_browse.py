"""What a researcher sees: the stack `make demo` starts (`python -m service.demo`) runs a small study, headless
Chromium opens it in MLflow's UI, and `make stop`'s command (`python -m service.demo --stop`) leaves nothing
running that the stack started.

The browser tests need Debian's `chromium` and `chromium-driver` (what `.ci/run` installs; there
ACTSTUDY_REQUIRE_BROWSER=1 makes their absence a failure). Screenshots go to $ACTSTUDY_SCREENSHOTS
(default `test-output/browse/`); `docs/browse.md` shows the ones taken with ACTSTUDY_SCREENSHOTS=docs/browse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from service.models import StudyResultsPublic
from studies import report
from studies.mlflow.layout import sanitize

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SPEC = """\
name: browse
dataset: {name: mnist1d}
model: {name: mlp, hidden: [32, 32]}
activations: [relu, {name: pwlu, stats_steps: 5}, lslu]
search: {trials_per_activation: 2, sampler: random, pruner: none}
training: {epochs: 3, batch_size: 256}
confirm: {seeds: 2, baseline: relu}
"""
MARK = "ACTSTUDY_TEST_STACK"  # in the demo's environment, so in everything it starts that keeps its environment


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    mark: str
    serve_pid: int
    results: StudyResultsPublic
    stopped: bool = False

    def started_processes(self) -> list[psutil.Process]:
        """What the stack started: processes in the serve process's session (the demo starts it in a new one),
        or holding this stack's mark in their environment (Ray's job drivers start new sessions), and their
        descendants (Ray's agents rename themselves over their environment)."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.serve_pid or proc.environ().get(MARK) == self.mark:
                    found[proc.pid] = proc
                    found |= {c.pid: c for c in proc.children(recursive=True)}
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError):
                continue
        return list(found.values())

    def stop(self) -> subprocess.CompletedProcess:
        self.stopped = True
        return subprocess.run([sys.executable, "-m", "service.demo", "--stop", "--data-dir", str(self.data_dir)],
                              env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    root = tmp_path_factory.mktemp("browse")
    spec = root / "browse.yaml"
    spec.write_text(SPEC)
    data_dir = root / "data"
    mark = uuid.uuid4().hex
    # As a user's shell would have it: none of the test session's service settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTSTUDY_", "MLFLOW_", "RAY_"))}
    env |= {MARK: mark, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.run([sys.executable, "-m", "service.demo", "--data-dir", str(data_dir), "--spec", str(spec), "--port", "0"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    pid_file = data_dir / "serve.pid"
    serve_pid = int(pid_file.read_text()) if pid_file.exists() else -1
    s = Stack(data_dir, env, mark, serve_pid, results=None)  # type: ignore[arg-type]
    try:
        assert demo.returncode == 0, f"the demo failed:\n{demo.stdout[-4000:]}\n{demo.stderr[-4000:]}"
        url = (data_dir / "serve.url").read_text().strip()
        admin = {"Authorization": f"Bearer {(data_dir / 'admin-token').read_text().strip()}"}
        studies = httpx.get(f"{url}/api/v1/studies", headers=admin, timeout=30).json()["data"]
        assert len(studies) == 1 and studies[0]["status"] == "succeeded", studies
        r = httpx.get(f"{url}/api/v1/studies/{studies[0]['id']}/results", headers=admin, timeout=30)
        s.results = StudyResultsPublic.model_validate(r.json())
        yield s
    finally:
        if not s.stopped:
            s.stop()


# --- the browser ---------------------------------------------------------------------------------------


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (make install)")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        message = (f"no browser for the MLflow UI tests: {missing} missing; install Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver), as .ci/run does")
        if os.environ.get("ACTSTUDY_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # This machine has no network but localhost: no background connections, no component updates.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("ACTSTUDY_SCREENSHOTS", ROOT / "test-output" / "browse"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, condition, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition, message=f"MLflow's UI never showed {what}")


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _open(driver, url: str, shows: str, timeout: float = 60) -> None:
    """Open a page of the MLflow UI and wait until it shows `shows`; close the assistant panel (noise in screenshots)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: shows in _text(d), repr(shows), timeout)
    for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close' or @aria-label='Expand description']"):
        try:
            button.click()  # close the assistant; show a run's whole description
        except Exception:  # noqa: BLE001 — not every such button is clickable; only these two matter
            pass


def _images_loaded(driver, src_part: str) -> list[int]:
    """Natural widths of the page's images whose source contains `src_part` (0: broken, or not loaded yet)."""
    return driver.execute_script(
        "return Array.from(document.images).filter(i => i.src.includes(arguments[0]))"
        ".map(i => i.complete ? i.naturalWidth : 0)", src_part)


EXPANDER = "[role=gridcell] button[data-component-id*='runnamecellrenderer']"


def _open_runs(driver, url: str) -> None:
    """The experiment's runs table as a first visit shows it: the UI keeps which rows were expanded in the
    browser's storage, so an earlier test's expansion is forgotten first (a click would collapse it)."""
    _open(driver, url, "matching runs")
    driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    driver.refresh()
    _open(driver, url, "matching runs")


def _expand_study(driver, labels: list[str]) -> None:
    """Show the activation runs nested beneath the study's run."""
    from selenium.webdriver.common.by import By

    expander = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, EXPANDER), "the study's row")[0]
    if not all(label in _text(driver) for label in labels):
        expander.click()
    _wait(driver, lambda d: all(label in _text(d) for label in labels), "the activation runs beneath the study")


def _screenshot(driver, path: Path, height: int | None = None) -> None:
    if height:
        driver.set_window_size(1600, height)
        time.sleep(1)  # a relayout
    driver.save_screenshot(str(path))
    driver.set_window_size(1600, 1000)


def test_the_experiment_opens_on_its_training_runs(stack, browser, shots):

    links = stack.results.mlflow
    assert links.experiment_url and "workflowType=machine_learning" in links.experiment_url
    _open_runs(browser, links.experiment_url)
    text = _text(browser)
    assert "Run Name" in text and "Traces" not in text.split("Run Name")[0].split("Runs")[-1]
    assert stack.results.name in text  # the study's parent run, the only top-level row
    _expand_study(browser, stack.results.ranking)
    _screenshot(browser, shots / "experiment-runs.png")


def test_the_parent_run_answers_on_its_overview(stack, browser, shots):
    from selenium.webdriver.common.by import By

    results = stack.results
    _open(browser, results.mlflow.parent_run_url, "Description")
    verdict = report.verdict(results)
    _wait(browser, lambda d: "ranks first" in _text(d), "the ranking's headline")
    text = " ".join(_text(browser).split())
    assert f"{results.name}: {results.best_activation} ranks first" in text
    assert " ".join(verdict.split()) in text
    table = browser.find_elements(By.XPATH, "//table[.//th[contains(., 'p (Holm)')]]//tr")
    rows = [r.text for r in table[1:]]
    assert [row.split()[1] for row in rows] == results.ranking  # rank order, one row per activation
    # The summary figures, embedded from the run's artifacts, load.
    _wait(browser, lambda d: (w := _images_loaded(d, "get-artifact")) and len(w) >= 2 and all(w), "the summary figures")
    # Its metrics chart the comparison: one per statistic and activation.
    assert f"test_acc_mean/{sanitize(results.best_activation)}" in text
    _screenshot(browser, shots / "parent-overview.png", height=2300)


def test_an_activation_run_shows_how_pwlu_evolved(stack, browser, shots, tmp_path):
    from mlflow.tracking import MlflowClient

    links = stack.results.mlflow
    label = next(label for label in stack.results.ranking if label.startswith("pwlu"))
    run = links.activation_runs[label]
    figure = MlflowClient(links.tracking_uri).download_artifacts(run.run_id, "evolution/net.2.png", str(tmp_path))
    width = _png_width(Path(figure))
    # On its Overview: the description embeds the best trial's evolution, one figure per layer.
    _open(browser, run.url, "Description")
    _wait(browser, lambda d: width in _images_loaded(d, "path=evolution/net.2.png"), "the evolution figure on the Overview")
    text = _text(browser)
    assert f"{label}: rank {stack.results.rank(label)} of 3" in text
    assert "best_lr" in text and "activation.segments" in text  # what the compare view compares on
    _screenshot(browser, shots / "activation-overview.png", height=2000)
    # And in its artifacts, as a user clicks through to it.
    base = links.parent_run_url.split("#")[0]
    _open(browser, f"{base}#/experiments/{links.experiment_id}/runs/{run.run_id}/artifacts/evolution/net.2.png"
                   "?workflowType=machine_learning", "net.2.png")
    _wait(browser, lambda d: width in _images_loaded(d, "blob:"), "the evolution figure in the artifact viewer")
    _screenshot(browser, shots / "activation-evolution.png")


def _png_width(path: Path) -> int:
    """The width in a PNG's header: the figure as drawn, which the browser's image must have."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big")


def test_activation_runs_compare_in_mlflow_charts(stack, browser, shots):
    from selenium.webdriver.common.by import By

    links = stack.results.mlflow
    _open_runs(browser, links.experiment_url)
    _expand_study(browser, stack.results.ranking)
    browser.find_element(By.XPATH, "//label[.//input[@value='CHART']]").click()  # the runs table's chart view
    search = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[placeholder='Search metric charts']"), "the chart search")
    search[0].send_keys("test_acc_mean")
    # One chart compares the activation runs (a bar per run), beside the study's test_acc_mean/<activation>.
    def charted(d) -> str | None:
        text = " ".join(_text(d).split())
        return text if "test_acc_mean (" in text and "Model metrics (1) test_acc_mean" in text and "best_val_acc (" not in text else None

    text = _wait(browser, charted, "the test_acc_mean charts")
    compared = text.split("Model metrics (1) test_acc_mean", 1)[1]
    assert all(label in compared for label in stack.results.ranking), compared
    assert f"test_acc_mean/{sanitize(stack.results.best_activation)}" in text
    _screenshot(browser, shots / "compare-charts.png", height=1300)


# --- stopping ------------------------------------------------------------------------------------------


def test_nothing_the_stack_started_outlives_make_stop(stack):
    """Last in this module: it stops the stack the tests above browse."""
    started = stack.started_processes()
    names = sorted({p.name() for p in started if p.is_running()})
    assert any(n.startswith("ray::DashboardAgent") for n in names) and "raylet" in names and "gcs_server" in names, names
    assert any("mlflow" in " ".join(p.cmdline()) for p in started if p.is_running()), names
    stopped = stack.stop()
    assert stopped.returncode == 0 and "stack stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    gone, alive = psutil.wait_procs(started, timeout=30)
    survivors = [f"{p.pid} {p.name()}" for p in alive] + [f"{p.pid} {p.name()}" for p in stack.started_processes()]
    assert not survivors, f"still running after make stop: {survivors}"
    again = stack.stop()
    assert "no stack running" in again.stdout

