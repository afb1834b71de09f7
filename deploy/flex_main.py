"""Entry point of the Dataflow flex template launcher (FLEX_TEMPLATE_PYTHON_PY_FILE in the image).

The launcher runs ``python flex_main.py --input=... --output=... --runner=DataflowRunner
--project=... --region=... [further template parameters and environment flags]``. This builds the
same graph as ``python -m pipelines.build`` and submits it; the package and every dependency are
already installed in the image, so nothing is staged or pip-installed for the workers.
"""

from __future__ import annotations

import sys

from pipelines.build import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
