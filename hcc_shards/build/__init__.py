"""The build's stages as plain functions on typed values, with no engine in them.

Order of operations (docs/FORMAT.md, docs/RUNNERS.md), with the module of each stage:

1. :mod:`~hcc_shards.build.inputs` and :mod:`~hcc_shards.build.listing`: INPUT's one grammar
   resolved into prefixes, listed in parallel tasks (:func:`listing_tasks`, :func:`list_task`).
2. :mod:`~hcc_shards.build.index`: one file's header, or a quarantine record (:func:`index_one`);
   pseudonymization happens here, once.
3. :mod:`~hcc_shards.build.pair`: all headers of one PatientID -> pairings and records
   (:func:`pair_one_patient`), then one pairing per case id (:func:`unique_case`).
4. :mod:`~hcc_shards.build.target`: the target spacing, config hash and version URL, resolved once
   from the selected cases (:func:`resolve_target`).
5. :mod:`~hcc_shards.build.cases`: the annotations of one CT image built together, or found
   complete (:func:`build_image`); every failure becomes a record.
6. :mod:`~hcc_shards.build.commit`: every outcome (:mod:`~hcc_shards.build.outcomes`) gathered,
   the summary computed from them, one commit (:func:`commit_outcomes`).

:mod:`~hcc_shards.build.local` drives them in this process (the reference, and ``hcc-shards plan``
through :mod:`~hcc_shards.build.dryrun`); ``pipelines/beam`` and ``pipelines/spark`` drive them on
an engine. Every stage receives one frozen :class:`~hcc_shards.build.plan.BuildPlan`, made from the
flags of :mod:`~hcc_shards.build.flags`. Progress goes to a local folder (:mod:`~hcc_shards.build.progress`).
"""
