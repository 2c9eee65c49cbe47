"""The book: Colab links from one setting, a warning-free build, and the pages in a real browser."""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
HTML = BOOK / "_build" / "html"
CHAPTERS = sorted(p.stem for p in BOOK.glob("[0-9]*.ipynb"))
NOTEBOOKS = sorted(BOOK.glob("[0-9]*.ipynb")) + sorted((ROOT / "tutorials").glob("*/*.ipynb"))


PAGES = ["syllabus", "gpu"]  # the course's pages beside the chapters


def test_every_chapter_and_page_is_in_the_toc():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    assert [c["file"] for c in toc["chapters"]] == CHAPTERS + PAGES


def test_the_syllabus_names_every_assignment_and_exactly_its_checks():
    rows = {line.split("|")[3].strip(" `").split("/")[-1]: set(re.findall(r"`(check_\w+)`", line))
            for line in (BOOK / "syllabus.md").read_text().splitlines()
            if line.startswith("|") and "tutorials/student/" in line}
    for source in sorted((ROOT / "tutorials/source").glob("*.ipynb")):
        calls = set(re.findall(r"(check_\w+)\(", source.read_text()))
        assert rows.get(source.stem) == calls, f"syllabus row for {source.stem}: {rows.get(source.stem)} vs {calls}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_and_install_line_follow_the_one_setting(nb_path):
    url = yaml.safe_load((BOOK / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    slug = url.split("github.com/", 1)[1]
    nb = nbformat.read(nb_path, as_version=4)
    text = "\n".join(c.source for c in nb.cells[:2])
    assert f"colab.research.google.com/github/{slug}/blob/" in text, "run: python book/notebook_tools.py sync-colab"
    assert f'"git+{url}" if "google.colab" in sys.modules' in text  # installs on Colab only, never touches torch
    assert 'os.environ.get("DEBLUR_EDU_INSTALL")' in text
    assert '[sys.executable, "-m", "pip", "install", "-q", source]' in text  # this kernel's Python, silently
    assert "pick_device()" in text and "run_mode(device)" in text


def test_every_chapter_ends_with_summary_and_exercises_with_answers():
    for ch in CHAPTERS:
        md = "\n".join(c.source for c in nbformat.read(BOOK / f"{ch}.ipynb", as_version=4).cells if c.cell_type == "markdown")
        for heading in ("Learning objectives", "## Summary", "## Exercises", "## References"):
            assert heading in md, f"{ch} lacks {heading!r}"
        assert ":class: dropdown" in md, f"{ch} has no answers in dropdowns"


@pytest.fixture(scope="module")
def built_book(request) -> Path:
    """Build the book once, with warnings as errors, from the chapters' one execution.

    When nbval ran the chapters earlier in this session (conftest.py puts the book tests last),
    each executed chapter is already in the book's execution cache and the build executes none
    of them again; run alone, the build executes them itself (quick mode)."""
    if not (BOOK / "_extra" / "assets" / "require.js").is_file():
        pytest.fail("the book's JavaScript assets are missing: run `make assets` (npm ci + copy)")
    exe = Path(sys.executable).parent / "jupyter-book"
    env = {**os.environ, "DEBLUR_EDU_MODE": os.environ.get("DEBLUR_EDU_MODE", "quick")}
    proc = subprocess.run([str(exe), "build", "-W", "-n", "--keep-going", str(BOOK)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "build succeeded" in proc.stdout
    if request.config.cached_chapters == set(CHAPTERS):
        executed = re.findall(r"Executing notebook", proc.stdout + proc.stderr)
        assert not executed, "the book build executed chapters again that nbval had already run"
    # Sphinx warnings read "file:line: WARNING: …" (-W turns them into errors as well);
    # the kernel's own "[IPKernelApp] WARNING | …" log lines are not build warnings
    assert not re.search(r"WARNING: ", proc.stdout + proc.stderr)
    return HTML


def test_book_builds_without_warnings(built_book):
    for page in ["intro", *CHAPTERS, *PAGES]:
        assert (built_book / f"{page}.html").is_file()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built_book))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _browser(*args: str) -> str:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (CI installs Debian's chromium); the browser check needs one")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=20000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _local_refs(dom: str, page: Path) -> list[Path]:
    refs = re.findall(r'(?:src|href)="([^"]+)"', dom)
    out = []
    for ref in refs:
        u = urlparse(ref)
        if u.scheme or ref.startswith(("#", "mailto:", "javascript:", "data:")):
            continue
        path = u.path
        if path:
            out.append((page.parent / path).resolve())
    return out


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_in_headless_browser(server, built_book, chapter):
    page = built_book / f"{chapter}.html"
    dom = _browser("--dump-dom", f"{server}/{chapter}.html")
    assert "mjx-container" in dom, "MathJax did not render the math (is the self-hosted MathJax served?)"
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    assert len(images) >= 3, "the chapter's figures are missing"
    broken = [str(p) for p in _local_refs(dom, page) if not p.exists()]
    assert not broken, f"broken local links or assets: {broken[:10]}"
    assert "widget-slider" in dom, "the embedded widget snapshot did not render (widget JS not served?)"
    assert "cdn.jsdelivr" not in dom and "cdnjs" not in dom, "the page still loads JavaScript from a CDN"


@pytest.mark.parametrize("page", PAGES)
def test_course_page_in_headless_browser(server, built_book, page):
    dom = _browser("--dump-dom", f"{server}/{page}.html")
    assert "<h1" in dom
    broken = [str(p) for p in _local_refs(dom, built_book / f"{page}.html") if not p.exists()]
    assert not broken, f"broken local links or assets: {broken[:10]}"


def test_screenshot_of_chapter_2(server, built_book):
    shot = built_book.parent / "screenshots" / "02_classical_deconvolution.png"
    shot.parent.mkdir(exist_ok=True)
    _browser("--window-size=1280,5200", f"--screenshot={shot}", f"{server}/02_classical_deconvolution.html")
    assert shot.stat().st_size > 100_000


def test_the_intro_maps_every_chapter():
    intro = (BOOK / "intro.md").read_text()
    for chapter in CHAPTERS + PAGES:
        assert f"]({chapter})" in intro, f"book/intro.md does not link {chapter}"
