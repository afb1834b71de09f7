"""Engine wiring of the hcc-shards build: ``pipelines.beam`` (Apache Beam: Direct, Dask, Dataflow,
...) and ``pipelines.spark`` (a native Spark driver), over the engine-free stages of
:mod:`hcc_shards.build`. ``pipelines.build`` is the launcher of both. The reader never imports this
package."""
