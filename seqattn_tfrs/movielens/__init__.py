"""The main job: Sequential Attention on MovieLens 100K, end to end.

An application of the library, not part of it: it uses only the public API of
``seqattn_tfrs`` (a test checks that) and has its own dependencies (the
``movielens`` extra). Modules: ``config`` (the job's typed config), ``data``
(the real MovieLens 100K files), ``models`` (a TFRS DCN ranking model),
``job`` (prepare, train, select, prune, export), ``report`` and ``cli`` (the
``seqattn-tfrs`` command).
"""
