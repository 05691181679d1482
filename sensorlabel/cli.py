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


def _add_propagate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("propagate", help="fill every frame of every keyframed track (interpolate, ICP, smooth)")
    p.add_argument("drive", type=Path)
    p.add_argument("--tracks", type=int, nargs="*", help="only these track ids")
    p.add_argument("--no-refine", action="store_true", help="interpolation only, no ICP against the points")
    p.add_argument("--no-extrapolate", action="store_true", help="do not track beyond the first/last keyframe")
    p.add_argument("--propose", action="store_true", help="also propose boxes for unlabelled point clusters")
    p.set_defaults(func=_cmd_propagate)


def _cmd_propagate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sensorlabel.drive import Drive
    from sensorlabel.propagation import PropagationConfig, propagate_drive

    drive = Drive.open(args.drive)
    config = PropagationConfig(refine=not args.no_refine, extrapolate=not args.no_extrapolate)
    with tqdm(total=1, desc="propagate", unit="step", disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = propagate_drive(drive, config, track_ids=args.tracks, progress=progress)
    print(f"{report.tracks} tracks from {report.keyframes} keyframes: wrote {report.written} "
          f"({report.skipped_human} human boxes left untouched) in {report.seconds:.1f} s")
    if args.propose:
        from sensorlabel.propagation.propose import propose_drive

        print(f"{propose_drive(drive)} proposals for unlabelled clusters")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON (numbers, lists, true) is taken as such, else as text."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SensorlabelError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _add_import(sub: argparse._SubParsersAction) -> None:
    from sensorlabel.formats import IMPORTERS

    p = sub.add_parser("import", help="import a recorded drive (" + " | ".join(IMPORTERS) + ") into NAME.drive")
    p.add_argument("format", choices=list(IMPORTERS), metavar="FORMAT", help=" | ".join(IMPORTERS))
    p.add_argument("src", type=Path, help="the source file or folder")
    p.add_argument("--out", type=Path, required=True, help="the .drive folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing drive")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="importer option, e.g. ego_frame=base_link or lidar_topics='[\"/points\"]' (repeatable)")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> int:
    from sensorlabel.formats import import_drive, show_progress

    with show_progress(sys.stderr.isatty()):
        drive = import_drive(args.format, args.src, args.out, overwrite=args.overwrite, **_parse_options(args.option))
    print(f"imported {args.src} ({args.format}) -> {drive.path}: {drive.num_frames} frames, "
          f"sensors {', '.join(drive.sensors)}, {drive.labels.count_boxes()} boxes")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from sensorlabel.formats import EXPORTERS

    p = sub.add_parser("export", help="export a drive's labels (" + " | ".join(EXPORTERS) + ")")
    p.add_argument("drive", type=Path)
    p.add_argument("--format", required=True, choices=list(EXPORTERS), metavar="FORMAT", help=" | ".join(EXPORTERS))
    p.add_argument("--out", type=Path, required=True, help="the output folder")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="exporter option (repeatable)")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from sensorlabel.formats import export_drive, show_progress

    with show_progress(sys.stderr.isatty()):
        written = export_drive(args.drive, args.format, args.out, **_parse_options(args.option))
    print(f"exported {args.drive} ({args.format}) -> {args.out}: {len(written)} files")
    return 0


def _add_fuse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuse", help="project lidar into the cameras, check the calibration, colour, aggregate")
    p.add_argument("drive", type=Path)
    p.add_argument("--colorize", action="store_true", help="write per-point colours (fusion/colors.npz)")
    p.add_argument("--aggregate", type=int, default=0, metavar="N", help="write N-sweep aggregates per frame")
    p.add_argument("--no-calibration-check", action="store_true", help="skip the calibration check")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DRIVE/fusion)")
    p.set_defaults(func=_cmd_fuse)


def _cmd_fuse(args: argparse.Namespace) -> int:
    from sensorlabel.drive import Drive
    from sensorlabel.fusion.pipeline import FuseConfig, fuse_drive

    if args.aggregate < 0:
        raise SensorlabelError(f"--aggregate must be >= 0, got {args.aggregate}")
    drive = Drive.open(args.drive)
    config = FuseConfig(colorize=args.colorize, aggregate_sweeps=args.aggregate,
                        calibration_check=not args.no_calibration_check)
    report = fuse_drive(drive, config, args.out)
    print(report.to_text())
    return 0


def _add_view(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="open the desktop viewer on a drive (every edit is committed at once)")
    p.add_argument("drive", type=Path)
    p.set_defaults(func=_cmd_view)


def _cmd_view(args: argparse.Namespace) -> int:
    from sensorlabel.drive import Drive

    Drive.open(args.drive)  # a bad path is one line and exit 2, before any window opens
    try:
        from sensorlabel.viewer.app import run_viewer
    except ImportError as exc:
        raise SensorlabelError(f"the viewer needs the 'viewer' extra (pip install 'sensorlabel[viewer]'): {exc}")
    return run_viewer(args.drive)


def _add_track(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="track 3D detections: KITTI tracking detection files -> KITTI tracking results")
    p.add_argument("--detections", type=Path, required=True, help="folder of SEQ.txt detection files")
    p.add_argument("--format", choices=["kitti-tracking"], default="kitti-tracking",
                   help="detection CSV frame,type,x1,y1,x2,y2,score,h,w,l,x,y,z,ry,alpha (1 Ped, 2 Car, 3 Cyc)")
    p.add_argument("--out", type=Path, required=True, help="folder for SEQ.txt results (label_02 format + score)")
    p.add_argument("--calib", type=Path, default=None, help="folder of SEQ.txt calibrations: track in the Velodyne frame")
    p.add_argument("--seqs", nargs="*", default=None, help="sequence names (default: every file)")
    p.set_defaults(func=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    from sensorlabel.tracking.kitti_detections import track_kitti_folder

    counts = track_kitti_folder(args.detections, args.out, args.calib, sequences=args.seqs)
    print(f"tracked {len(counts)} sequences ({sum(counts.values())} result rows) -> {args.out}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate tracking or propagation against ground truth")
    eval_sub = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    _add_eval_tracking(eval_sub)
    _add_eval_propagation(eval_sub)


def _add_eval_propagation(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("propagation", help="keyframe propagation vs copy/linear baselines on a labelled drive")
    p.add_argument("drive", type=Path, help="a drive whose imported boxes (with track ids) are the ground truth")
    p.add_argument("--intervals", type=int, nargs="+", default=[5, 10, 20], help="keyframe intervals")
    p.add_argument("--protocol", choices=["track", "global"], default="track",
                   help="track: each track keyed at its start, every k frames and its end; global: frames %% k == 0")
    p.add_argument("--no-refine", action="store_true", help="score interpolation only (no ICP against the points)")
    p.add_argument("--out", type=Path, help="write the scores as JSON here")
    p.set_defaults(func=_cmd_eval_propagation)


def _cmd_eval_propagation(args: argparse.Namespace) -> int:
    import json

    from sensorlabel.drive import Drive
    from sensorlabel.errors import SchemaError
    from sensorlabel.eval.propagation import GroundTruth, evaluate_propagation, format_table
    from sensorlabel.propagation import PropagationConfig

    drive = Drive.open(args.drive)
    rec = drive.labels.query(sources=["imported"])
    if len(rec) == 0:
        raise SchemaError(args.drive, "no imported boxes to use as ground truth (labels.sqlite has none)")
    times = drive.frame_timestamps_ns
    gt = GroundTruth(rec.frame, rec.boxes, times, drive.world_SE3_ego(times))
    results = evaluate_propagation(gt, tuple(args.intervals), drive=drive, protocol=args.protocol,
                                   config=PropagationConfig(refine=not args.no_refine))
    print(format_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


def _add_eval_tracking(eval_sub: argparse._SubParsersAction) -> None:
    p = eval_sub.add_parser("tracking", help="KITTI tracking: CLEAR MOT, sAMOTA/AMOTA/AMOTP (3D IoU), HOTA")
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth label_02 SEQ.txt files")
    p.add_argument("--results", type=Path, required=True, help="folder of result SEQ.txt files (with scores)")
    p.add_argument("--seqs", nargs="*", default=None, help="sequence names (default: every result file)")
    p.add_argument("--classes", nargs="*", default=["Car", "Pedestrian", "Cyclist"])
    p.add_argument("--iou", type=float, default=None, help="3D IoU of a true positive (default 0.25, AB3DMOT)")
    p.add_argument("--json", type=Path, default=None, help="report file (default RESULTS/tracking_eval.json)")
    p.set_defaults(func=_cmd_eval_tracking)


def _cmd_eval_tracking(args: argparse.Namespace) -> int:
    from sensorlabel.eval.kitti_filter import evaluate_kitti_tracking, format_tracking_table, write_report

    report = evaluate_kitti_tracking(args.gt, args.results, args.seqs, tuple(args.classes), args.iou)
    print(format_tracking_table(report))
    path = write_report(args.json or args.results / "tracking_eval.json", report)
    print(f"report: {path}")
    return 0


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from sensorlabel.batch import COMMANDS

    p = sub.add_parser("batch", help="run a command over many drives on Dask (a local cluster by default)",
                       description="One Dask task per drive; failing drives are reported and the others finish; a "
                                   "re-run skips drives already done (X.drive/.batch/COMMAND.json). Exit code 0 when "
                                   "every drive succeeds, 2 when a drive failed on bad input, 1 on a bug or a lost "
                                   "worker.")
    p.add_argument("batch_command", choices=list(COMMANDS), metavar="COMMAND", help=" | ".join(COMMANDS))
    p.add_argument("drives", type=Path, nargs="+", metavar="DRIVES", help=".drive folders (import: sources)")
    p.add_argument("--scheduler", default=None, metavar="tcp://host:8786", help="an existing Dask scheduler")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: min(drives, CPUs))")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output root: import -> DIR/NAME.drive, fuse/export -> DIR/NAME/, "
                        "eval -> DIR/NAME.propagation.json")
    p.add_argument("--force", action="store_true", help="redo drives that are already done")
    g = p.add_argument_group("command options (as for the single-drive commands)")
    g.add_argument("--format", default=None, help="import / export: the format")
    g.add_argument("--overwrite", action="store_const", const=True, default=None, help="import: replace existing drives")
    g.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="import / export: importer or exporter option (repeatable)")
    g.add_argument("--colorize", action="store_const", const=True, default=None, help="fuse")
    g.add_argument("--aggregate", type=int, default=None, metavar="N", help="fuse")
    g.add_argument("--no-calibration-check", action="store_const", const=True, default=None, help="fuse")
    g.add_argument("--no-refine", action="store_const", const=True, default=None, help="propagate")
    g.add_argument("--no-extrapolate", action="store_const", const=True, default=None, help="propagate")
    g.add_argument("--intervals", type=int, nargs="+", default=None, metavar="K", help="eval: keyframe intervals")
    g.add_argument("--protocol", choices=["track", "global"], default=None, help="eval: keyframe protocol")
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    # Dask logs every worker start and stop at INFO; keep them for --verbose (read when distributed is imported).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if args.verbose else "warning")

    from sensorlabel.batch import run_batch

    given = {
        "format": args.format, "overwrite": args.overwrite, "colorize": args.colorize, "aggregate": args.aggregate,
        "calibration_check": None if args.no_calibration_check is None else False,
        "refine": None if args.no_refine is None else False,
        "extrapolate": None if args.no_extrapolate is None else False,
        "intervals": args.intervals, "protocol": args.protocol,
    }
    if args.option is not None:
        given["importer_options" if args.batch_command == "import" else "exporter_options"] = _parse_options(args.option)
    options = {key: value for key, value in given.items() if value is not None}
    with tqdm(total=len(args.drives), desc=f"batch {args.batch_command}", unit="drive", disable=None) as bar:
        def progress(result, done: int, total: int) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{result.name}: {result.status}")

        report = run_batch(args.batch_command, args.drives, out=args.out, options=options, scheduler=args.scheduler,
                           workers=args.workers, force=args.force, progress=progress)
    print(report.to_table())
    for result in report.results:
        if result.traceback:
            print(f"\n{result.name}: {result.traceback}", file=sys.stderr)
    return report.exit_code


_COMMANDS = [_add_info, _add_demo, _add_propagate, _add_import, _add_export, _add_fuse, _add_view, _add_track, _add_eval, _add_batch]


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
