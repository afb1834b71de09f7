"""Apache Beam wiring of the build: options, thin transforms over the stages of
:mod:`hcc_shards.build`, the graph, runners and the launcher. No logic of the build lives here."""
