"""The product floor: the `siamese` command, the end-to-end run (`siamese/run/`) and the evaluation report
(`siamese/evaluation.py`). It wires the stages together (training → exporter → vespa_app) and owns the report;
no stage imports it."""
