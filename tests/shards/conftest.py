import sys
from pathlib import Path

# The phantom helpers live next to the tests that use them.
sys.path.insert(0, str(Path(__file__).parent))
