"""The quickstart runs and matches the README.

That the generated code matches proto/ is checked for every client at once by
.ci/run (it runs `buf generate` from the repository root and fails on a diff).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import CLIENT_DIR, SesameServer

QUICKSTART = CLIENT_DIR / "examples" / "quickstart.py"


def test_quickstart_runs_against_the_server(server: SesameServer) -> None:
    env = dict(
        os.environ,
        SESAME_URL=f"http://{server.target}",
        SESAME_SUBMITTER_KEY=server.create_key("backend", "submitter"),
        SESAME_ADMIN_KEY=server.admin_key or "",
    )
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    submitted = re.fullmatch(r"EVENT_TYPE_REQUEST_SUBMITTED (accessRequests/[0-9a-f-]{36})", lines[0])
    approved = re.fullmatch(r"EVENT_TYPE_REQUEST_APPROVED (accessRequests/[0-9a-f-]{36})", lines[1])
    assert submitted and approved, result.stdout
    assert submitted.group(1) == approved.group(1)


def test_readme_shows_the_quickstart_verbatim() -> None:
    readme = (CLIENT_DIR / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert QUICKSTART.read_text(encoding="utf-8") in blocks
