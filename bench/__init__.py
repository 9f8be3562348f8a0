"""The benchmark: maintainer's batched cleanup against the guide's single DELETE.

``python -m bench [--events N] [--database-url URL]``; see bench/README.md. Modules: ``database`` (the
template and its copies), ``variants`` (what is compared, and how each is measured), ``load`` (the
application), ``measure`` (percentiles and batch times), ``suite`` (one run, in order), ``report``
(tables, verdicts, the JSON summary).
"""
