"""The data sets that ship with the project (``common/datasets/``, sources and licences in its README)."""

from pathlib import Path

DATASETS = Path(__file__).parent / "datasets"
SCIFACT = DATASETS / "scifact"  # the default training and evaluation set (BEIR folder)
STSB_TEST = DATASETS / "stsb" / "stsb-en-test.csv"  # the STS check beside retrieval
STSB_TRAIN = DATASETS / "stsb" / "stsb-en-train.csv"  # general-domain sentences (anchor), disjoint from test

# Out-of-domain guard sets (BEIR folders, split "test"): retrieval that fine-tuning must not make worse.
GUARDS = {"cisi": DATASETS / "cisi", "medquad": DATASETS / "medquad"}
