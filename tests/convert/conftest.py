"""tests/convert: this folder's helper module (convert_helpers) importable by the tests beside it."""

import sys
from pathlib import Path

# importlib import mode: the folder is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))
