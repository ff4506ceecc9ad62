"""`siamese`: one command in front of every stage. It only wires the stages' own commands together."""
from __future__ import annotations

import argparse

from exporter import cli as exporter_cli
from training import cli as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamese", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    training_cli.add_commands(sub)
    exporter_cli.add_commands(sub)
    return parser


def main(argv=None) -> int:
    return training_cli.run(build_parser(), argv)
