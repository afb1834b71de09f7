"""A native Spark driver of the build (``hcc-shards build --engine spark``, ``spark-submit
pipelines/spark/submit.py``): the stages of :mod:`hcc_shards.build` as RDD steps, the commit on the
driver. Needs the ``spark`` extra (pyspark, which bundles Spark) and a Java 17+ runtime."""
