"""The report opens in a headless browser with every plot drawn, and every embedded image is a valid PNG."""
import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.evaluate.report import RunSection, write_report
from hpcsynth.evaluate.suite import evaluate

# the comparison: strategies side by side, scores against the round; per run: marginals, KM, correlation,
# genomics, DCR, fairness, training rounds, scores against the round
EXPECTED_IMAGES = 2 + 2 * 8
DRAWN = """<script>window.addEventListener('load', () => document.body.setAttribute('data-drawn',
  [...document.images].filter(i => i.complete && i.naturalWidth > 0).length));</script></body>"""


def _browser() -> str | None:
    """A headless Chromium: the one on PATH, or Debian's package installed here when this is a Debian machine
    and the tests run as root (as CI does); None elsewhere."""
    names = ("chromium", "chromium-browser", "google-chrome")
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"apt-get install chromium failed: {done.stderr[-2000:]}"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def report(mds, noisy_synthetic, tmp_path_factory):
    train, holdout, site, transformer = mds
    ev = evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), site=site, n_sites=3)
    rounds = pd.DataFrame({"round": np.arange(3), "loss": [3.0, 2.0, 1.5], "wall_s": [1.0, 1.1, 0.9],
                           "comm_s": [0.1, 0.1, 0.1], "eval_s": [0.2, np.nan, 0.2], "quality": [0.7, np.nan, 0.8],
                           "csf": [0.6, np.nan, 0.7], "gsf": [0.5, np.nan, 0.6]})
    path = tmp_path_factory.mktemp("report") / "run.html"
    return write_report(path, [RunSection("fedavg", ev, rounds), RunSection("isolated", ev, rounds)], "test")


def test_every_embedded_image_decodes_as_png(report):
    from PIL import Image

    sources = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', report.read_text())
    assert len(sources) == EXPECTED_IMAGES
    for source in sources:
        data = base64.b64decode(source)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.size[0] > 100 and image.size[1] > 100


def test_report_opens_in_headless_chromium_with_every_plot_drawn(report, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on PATH and no root apt-get to install it; the PNG decoding test still ran")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", DRAWN))
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    drawn = re.search(r'data-drawn="(\d+)"', done.stdout)
    assert drawn is not None, done.stderr[-2000:]
    assert int(drawn.group(1)) == EXPECTED_IMAGES
    assert "Strategy comparison" in done.stdout and "Kaplan-Meier" in done.stdout
    assert 'alt="strategies against the round"' in done.stdout and "What gives the synthetic rows away" in done.stdout
