"""The SDK must install and import without the server: standard library and PyJWT only."""

import subprocess
import sys

PROBE = """
import sys
import jwt  # whatever PyJWT itself loads (cryptography, when installed) is PyJWT's business
before = set(sys.modules)
import docuhooks_receiver
from docuhooks_receiver import *
loaded = sorted(
    name.split(".")[0] if not name.startswith("docuhooks") else name
    for name in set(sys.modules) - before
)
print("\\n".join(loaded))
"""


def test_receiver_imports_only_the_standard_library_and_pyjwt() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True
    ).stdout.split()
    foreign = {
        name
        for name in out
        if not name.startswith("docuhooks_receiver")
        and name not in {"docuhooks", "jwt"}
        and name.split(".")[0] not in sys.stdlib_module_names
        and not name.startswith("_")
    }
    assert foreign == set(), f"the receiver SDK pulled in {sorted(foreign)}"
    assert "docuhooks_receiver.fastapi" not in out
    assert "docuhooks_receiver.flask" not in out
