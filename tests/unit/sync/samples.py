"""Microsoft's documented sample payloads (tests/fixtures/ms-samples), read the way a person reads them.

The AS-PRINTED Defender samples are not valid JSON: `"osPlatform": "Windows10" "Windows11"` (two
alternatives printed side by side; a reader takes the first) and a trailing `...` where the docs elide
further machines. `repair_as_printed` makes exactly those two repairs and nothing else.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fixtures import MS_SAMPLES as SAMPLES


def sample_text(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def sample_json(name: str) -> Any:
    return json.loads(sample_text(name))


def repair_as_printed(text: str) -> Any:
    text = re.sub(r'("[^"\n]*")\s+"[^"\n]*"(\s*,)', r"\1\2", text)  # "Windows10" "Windows11", -> first
    text = re.sub(r",?\s*\.\.\.\s*(?=[\]}])", "", text)  # an elided "..." before a closing bracket
    return json.loads(text)
