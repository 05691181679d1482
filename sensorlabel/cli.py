"""Command line: parse, call the library, set the exit code.

Every sub-command is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_cmd_<name>(args) -> int`` runs it.
A :class:`~sensorlabel.errors.SensorlabelError` becomes one line on stderr and exit code 2; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sensorlabel.errors import SensorlabelError

EXIT_BAD_INPUT = 2


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a drive: sensors, frames, points, labels")
    p.add_argument("drive", type=Path)
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from sensorlabel.drive import Drive

    drive = Drive.open(args.drive)
    print(drive.summary())
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic drive -> keyframes -> propagation -> report (-> viewer)")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for the drive and the report")
    p.add_argument("--no-view", action="store_true", help="do not open the viewer")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from sensorlabel.demo import run_demo

    report = run_demo(args.out, num_frames=args.frames, seed=args.seed, view=not args.no_view)
    print(report.to_text())
    return 0


_COMMANDS = [_add_info, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensorlabel", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except SensorlabelError as exc:
        print(f"sensorlabel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"sensorlabel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
