"""What a researcher sees after `make demo`, in a real browser (Debian's Chromium, headless, driven by Selenium):
every HTML report renders its figures with no error text, and the MLflow UI, served on 127.0.0.1, opens the
sweep's experiment on its runs table with the sweep's runs nested under the sweep's parent run. The docs site, as
`make docs` builds it, opens on a tutorial and a generated reference page: they render, their images load and
every internal link answers.

`make test-browser` (in CI). Runs the embedded default sweep from nothing first, like `make demo`, and writes
screenshots and the demo's time to test-output/browser/. Skipped, with the reason, where Chromium cannot be
installed (apt-get needs root). CLUSTERLAB_BROWSER_RESULTS=<results folder> checks a finished sweep instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from debian import apt_install, unavailable

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "test-output" / "browser"
PACKAGES = ("chromium", "chromium-driver")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPORTS = ("clustering", "ood", "diffusion", "claims")
# what a failed cell leaves on the page (nbconvert shows tracebacks and stderr as text)
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b[A-Z]\w*(Error|Exception): ")


def _install_chromium() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    reason = apt_install(PACKAGES, "Chromium")
    if reason:
        unavailable(reason)


@pytest.fixture(scope="module")
def browser():
    _install_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # no sandbox as root; no background connections (this machine's network is closed: they fail by the dozen)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    profile = OUTPUT.parent / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The embedded default sweep, run from nothing as `make demo` runs it (CLUSTERLAB_BROWSER_RESULTS=<results
    folder>: check that finished sweep instead)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    if os.environ.get("CLUSTERLAB_BROWSER_RESULTS"):
        return Path(os.environ["CLUSTERLAB_BROWSER_RESULTS"]).resolve()
    workdir = tmp_path_factory.mktemp("demo")
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    started = time.perf_counter()
    result = subprocess.run([snakemake, "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "workflow/profiles/local"),
                             "--directory", str(workdir)], capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    (OUTPUT / "demo.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    (OUTPUT / "demo.json").write_text(json.dumps({"demo_seconds": round(seconds, 1)}))
    return workdir / "results"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(demo):
    port = _free_port()
    log = open(OUTPUT / "mlflow-server.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                               f"sqlite:///{demo / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{address}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (OUTPUT / "mlflow-server.log").read_text()
            time.sleep(0.5)
    yield address
    server.terminate()
    server.wait(timeout=30)
    log.close()


def _wait_for(driver, condition, seconds: float = 60, what: str = "the page"):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            driver.save_screenshot(str(OUTPUT / "timeout.png"))
            raise AssertionError(f"{what} did not show within {seconds:.0f} s (test-output/browser/timeout.png)")
        time.sleep(0.5)


def _page_text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _loaded_text(driver, marker: str, what: str) -> str:
    """The page's text once it has loaded and shows `marker` (a CI run read '' right after `get`: the body was not
    laid out yet)."""
    return _wait_for(driver, lambda: driver.execute_script("return document.readyState") == "complete"
                     and marker in (text := _page_text(driver)) and text, what=what)


# the figures a researcher looks at first (issue 30), by the alt text the report gives them
LOOK_FIGURES = {"clustering": ("figures/gallery.png", "figures/matrix.png", "figures/map.png")}


@pytest.mark.parametrize("name", REPORTS)
def test_each_report_renders_its_figures_and_no_error(browser, demo, name):
    browser.get((demo / "reports" / f"{name}.html").as_uri())
    images = _wait_for(browser, lambda: browser.execute_script(
        "return document.readyState === 'complete' ? Array.from(document.images).map("
        "image => [image.complete, image.naturalWidth]) : null"), what=f"{name}.html")
    browser.save_screenshot(str(OUTPUT / f"report-{name}.png"))
    assert images, f"{name}.html has no figure"
    assert all(complete and width > 0 for complete, width in images), f"{name}.html: a figure did not render"
    shown = set(browser.execute_script("return Array.from(document.images).map(image => image.alt)"))
    assert set(LOOK_FIGURES.get(name, ())) <= shown, f"{name}.html lacks {set(LOOK_FIGURES[name]) - shown}"
    assert browser.title and browser.title != "Notebook"
    text = _page_text(browser)
    assert not ERROR_TEXT.search(text), ERROR_TEXT.search(text).group(0)
    stderr = browser.execute_script("return document.querySelectorAll("
                                    "'[data-mime-type=\"application/vnd.jupyter.stderr\"]').length")
    assert stderr == 0, f"{name}.html shows {stderr} stderr outputs"


def test_mlflow_ui_lists_the_sweeps_runs_under_its_parent_run(browser, demo, mlflow_ui):
    from mlflow.tracking import MlflowClient

    from lightning_modules.analysis.reporting import mlflow_runs_address
    from lightning_modules.services.tracking import ROLE_TAG

    client = MlflowClient(tracking_uri=f"sqlite:///{demo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clusterlab-demo")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parent = [run for run in runs if run.data.tags.get(ROLE_TAG) == "sweep"]
    assert len(parent) == 1
    children = [run for run in runs if run is not parent[0]]
    assert all(run.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id for run in children)

    # the address `make demo` prints: the experiment's runs table, in the UI's model-training mode
    browser.get(mlflow_runs_address(demo, mlflow_ui))
    _wait_for(browser, lambda: parent[0].info.run_name in _page_text(browser), what="the sweep's parent run")
    browser.save_screenshot(str(OUTPUT / "mlflow-runs.png"))
    # the UI folds a parent's runs under it: open the fold (the button in the parent's run-name cell)
    expand = browser.execute_script(
        "const row = Array.from(document.querySelectorAll('[role=row]')).find(r => r.innerText.includes(arguments[0]));"
        "return row ? row.querySelector('[col-id*=\"Run Name\"] button') : null", parent[0].info.run_name)
    assert expand is not None, "the sweep's parent run has no fold to open"
    expand.click()
    newest = sorted(children, key=lambda run: run.info.start_time, reverse=True)[:10]
    _wait_for(browser, lambda: all(run.info.run_name in _page_text(browser) for run in newest),
              what="the sweep's newest runs")
    browser.save_screenshot(str(OUTPUT / "mlflow-runs-expanded.png"))


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory, demo):
    """The docs site as `make docs` builds it after this demo (its figures rendered from the demo's files), served
    on 127.0.0.1 (MkDocs' directory URLs need a server)."""
    import functools
    import http.server
    import threading

    OUTPUT.mkdir(parents=True, exist_ok=True)
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "--quiet",
                           "--site-dir", str(site)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "CLUSTERLAB_DOCS_RESULTS": str(demo)})
    assert done.returncode == 0, done.stderr[-3000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("page, expected", [("", "make demo"),  # the home page, with the report's picture
                                            ("tutorials/own-features/", "make run CONFIG=my-sweep.yaml"),
                                            ("demo/", "Mean ACC over seeds"),  # figures from this demo's files
                                            ("reference/configuration/", "clustering.selection_criterion")])
def test_docs_pages_render_with_their_links_and_images(browser, docs_site, page, expected):
    browser.get(f"{docs_site}/{page}")
    _loaded_text(browser, expected, what=page)
    browser.save_screenshot(str(OUTPUT / f"docs-{page.strip('/').replace('/', '-') or 'home'}.png"))
    images = browser.execute_script("return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])")
    assert all(complete and width > 0 for _, complete, width in images), images
    assert page or any("clustering-report.png" in source for source, _, _ in images)
    links = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    internal = {link.split("#")[0] for link in links if link.startswith(docs_site)}
    assert len(internal) > 5, internal  # the navigation at least
    for link in sorted(internal):
        with urllib.request.urlopen(link, timeout=10) as answer:  # a broken internal link raises HTTPError 404
            assert answer.status == 200, link


def test_the_demo_pages_figures_come_from_this_demo(browser, docs_site, demo):
    """Every figure of the demo's page is rendered from the files this demo wrote: none says it has not run."""
    browser.get(f"{docs_site}/demo/")
    text = _loaded_text(browser, "Mean ACC over seeds", what="demo/")
    assert "Not run in this checkout yet" not in text
    import pandas as pd

    clustering = pd.read_parquet(demo / "tables" / "clustering.parquet")
    temi = clustering[(clustering.dataset == "digits") & (clustering.method == "temi") & (clustering.k == 10)]
    assert f"{temi.acc.mean():.3f}" in text  # the mean over seeds, as the file gives it


@pytest.mark.parametrize("page", ["claims-ledger.md", "reproduce.md"])
def test_the_tutorials_that_read_a_sweep_run_on_this_demo(page, demo, tmp_path):
    """The tutorials that start from a finished sweep run as written on this one (the others run in make test)."""
    from test_tutorials import TUTORIALS, run_page, tutorial_project

    project = tutorial_project(tmp_path)
    (project / "results").symlink_to(demo)
    run_page(TUTORIALS / page, project)
