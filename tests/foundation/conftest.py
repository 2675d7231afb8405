import sys
from pathlib import Path

# importlib import mode: make this folder's helper module importable by the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
