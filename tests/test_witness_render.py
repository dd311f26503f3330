"""witness.html renders in headless Chromium, offline, with every image loaded and no request out.

Chromium is a Debian package that .ci/run installs; a developer machine without it skips this test
with that reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness_runner import CONTRACT, SITE, run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the report: after load, write what loaded into the DOM for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const outside = performance.getEntriesByType("resource")
      .map(e => e.name).filter(n => !n.startsWith("data:"));
  document.body.setAttribute("data-probe",
      `images=${document.images.length};broken=${broken};outside=${outside.join("|")}`);
});
</script>
"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_witness_report_renders_offline_in_chromium(tmp_path: Path):
    # Islanding and the trip settings give the report its time-critical plots.
    result = run(tmp_path, SITE, CONTRACT, "--", "-k", "test_islanding or test_trip_settings")
    assert (result.folder / "witness.html").is_file(), result.out
    page = tmp_path / "probe.html"
    page.write_text(
        (result.folder / "witness.html").read_text().replace("</body>", PROBE + "</body>")
    )
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-probe="images=' in dom, dom[-2000:]
    probe = dom.split('data-probe="', 1)[1].split('"', 1)[0]
    fields = dict(part.split("=", 1) for part in probe.split(";"))
    assert int(fields["images"]) >= 1, probe
    assert fields["broken"] == "0", probe
    assert fields["outside"] == "", probe
    pdf = tmp_path / "witness.pdf"
    subprocess.run(
        [
            *common,
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            (result.folder / "witness.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert pdf.read_bytes().count(b"/Type /Page") >= 2  # printable, more than one A4 page
