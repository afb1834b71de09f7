"""``spark-submit pipelines/spark/submit.py --input=IN --output=OUT [build flags]``: the build on the
cluster spark-submit names (Dataproc, EMR, Databricks, or ``--master local[N]``; docs/RUN_ON_SPARK.md).
The flags are those of ``python -m pipelines.build`` (hcc_shards.build.flags), without Beam's."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hcc_shards.build.launch import configure_logging, format_summary
from hcc_shards.errors import OperatorError
from hcc_shards.text import shown
from pipelines.spark.driver import run_build


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    configure_logging(verbose)
    try:
        summary = run_build([a for a in argv if a not in ("-v", "--verbose")], master=None)
    except OperatorError as exc:
        print(f"hcc-shards build: {shown(exc, limit=None)}", file=sys.stderr)
        return exc.exit_code
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
