"""The demo: generated sample inputs (:mod:`openchargeback.demo.sampledata`) and
the ``demo`` and ``generate_sample_data`` commands that load them and run a
month-end across every app. Out of the apps' import path: the demo composes
ingest, statements and journals, which only the project package may do
(docs/decisions/0004-app-boundaries.md)."""
