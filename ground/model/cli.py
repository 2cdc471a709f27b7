"""``ground model list|activate|rollback|quantize|upload``: models onboard and on their way up.

Mounted by the ``ground`` command through :func:`add_model_parser`. Each leaf sets ``args.handler``,
a function of the parsed arguments returning the exit status (``async def`` for the subcommands that
talk to the satellite, a plain function for ``quantize``, which works on local files only); they read
the global options as :mod:`ground.options` defines them. ``quantize`` runs without the global options
through :func:`quantize_main`.

``ground model quantize IN.onnx --calib DATA.npz -o OUT.onnx [--activations uint8|int8]
[--per-channel|--no-per-channel] [--dynamic] [--threads 2] [--bench-seconds 1.0] [--manifest]
[--name NAME --version VERSION] [--json]``: ``DATA.npz`` maps each model input name to an array with
the batch along axis 0 (docs/models.md). ``ground model upload FILE --name N --version V
[--chunk-bytes B] [--window W] [--activate]`` (docs/model-uplink.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ground.model import quantize
from ground.model.files import build_manifest, write_manifest
from ground.model.quantize import (
    CalibrationError,
    Feeds,
    QuantizationRefused,
    QuantReport,
    load_calibration,
    quantize_model,
)
from ground.model.upload import upload_model
from ground.options import client_from_args, print_json
from link.digest import sha256_file
from link.manifest import MODEL_FILE
from link.uplink import DEFAULT_CHUNK_BYTES, UploadState

# ------------------------------------------------------------------------------- list, activate, rollback


async def cmd_model_list(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        models = await ground.models()
    if args.json:
        print_json(models)
    else:
        for m in models:
            flag = "*" if m["active"] else " "
            problem = f"  PROBLEM: {m['problem']}" if m["problem"] else ""
            print(f"{flag} {m['name']}/{m['version']}  {m['quantization']}  {m['size_bytes']} B{problem}")
    return 0


def _print_activated(data: dict[str, Any]) -> None:
    print(f"{data['name']}: active {data['active']} (was {data['previous']})")


async def cmd_model_activate(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        data = await ground.activate_model(args.name, args.version)
    _print_activated(data)
    return 0


async def cmd_model_rollback(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        data = await ground.rollback_model(args.name)
    print(f"{data['name']}: active {data['active']}")
    return 0


# ---------------------------------------------------------------------------------------------- quantize


def _registry_identity(path: Path) -> tuple[str, str] | None:
    """(name, version) if ``path`` is ``.../<name>/<version>/model.onnx``."""
    if path.name != MODEL_FILE or len(path.resolve().parts) < 3:
        return None
    return path.resolve().parent.parent.name, path.resolve().parent.name


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ground model quantize`` on an existing parser."""
    parser.add_argument("model", type=Path, help="FP32 ONNX model to quantize")
    parser.add_argument("--calib", type=Path, help=".npz: input name -> array, batch along axis 0")
    parser.add_argument("-o", "--output", type=Path, required=True, help="quantized ONNX file to write")
    parser.add_argument("--activations", choices=["uint8", "int8"], default="uint8",
                        help="activation type (default uint8: int8 left many convs in float on x86)")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="per-channel int8 weights (default on)")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic quantization (refused for convolutional networks)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for the speed check")
    parser.add_argument("--bench-seconds", type=float, default=1.0, help="timing budget per model (s)")
    parser.add_argument("--manifest", action="store_true",
                        help="write manifest.json next to the output (name/version from --name/--version "
                             "or from an output path .../<name>/<version>/model.onnx)")
    parser.add_argument("--name", help="model name for the manifest (implies --manifest)")
    parser.add_argument("--version", dest="model_version", help="model version for the manifest")
    parser.add_argument("--description", default="", help="manifest description")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def add_quantize_parser(model_subparsers: Any) -> None:
    """Add ``quantize`` to the ``ground model`` subcommands (``model_subparsers`` from add_subparsers);
    the handler is :func:`cmd_model_quantize`."""
    parser: argparse.ArgumentParser = model_subparsers.add_parser(
        "quantize", help="INT8-quantize an ONNX model (static QDQ) and report size, speed and agreement"
    )
    add_quantize_arguments(parser)
    parser.set_defaults(handler=cmd_model_quantize)


def _print_report(report: QuantReport) -> None:
    lines = [
        f"quantized {report.input_path} -> {report.output_path} ({report.mode}, {report.activations} "
        f"activations, per-channel {'on' if report.per_channel else 'off'})",
        f"size    {report.size_fp32_bytes} -> {report.size_int8_bytes} bytes ({report.size_ratio:.2f}x)",
        f"speed   {report.fp32_inf_s:.1f} -> {report.int8_inf_s:.1f} inf/s ({report.speedup:.2f}x, "
        f"{report.threads} threads, batch {report.batch}, ORT {report.onnxruntime_version})",
        f"nodes   {report.quantized_compute_nodes} conv/matmul/gemm quantized, "
        f"{report.float_compute_nodes} left in float",
    ]
    if report.compared_output is not None:
        top1 = "n/a" if report.top1_agreement is None else f"{report.top1_agreement:.4f}"
        lines.append(
            f"agree   {report.calib_samples} calibration samples, output {report.compared_output!r}: "
            f"top-1 {top1}, max |diff| {report.max_abs_diff:.4g}, mean |diff| {report.mean_abs_diff:.4g}"
        )
    if report.speedup < 1.0:
        lines.append("warning: the INT8 model is slower than FP32 on this machine")
    if report.manifest_path:
        lines.append(f"manifest {report.manifest_path}")
    print("\n".join(lines))


def cmd_model_quantize(args: argparse.Namespace) -> int:
    """Execute parsed ``ground model quantize`` arguments; 0 ok, 2 refused/bad input."""
    calib: Feeds | None = None
    try:
        if args.calib is not None:
            calib = load_calibration(args.calib)
        identity: tuple[str, str] | None = None
        if args.manifest or args.name or args.model_version:
            inferred = _registry_identity(args.output)
            name = args.name or (inferred[0] if inferred else None)
            version = args.model_version or (inferred[1] if inferred else None)
            if not name or not version:
                raise CalibrationError(
                    "a manifest needs --name and --version (or an output path .../<name>/<version>/model.onnx)"
                )
            identity = (name, version)
        report = quantize_model(
            args.model,
            args.output,
            calib,
            activations=args.activations,
            per_channel=args.per_channel,
            dynamic=args.dynamic,
            threads=args.threads,
            bench_seconds=args.bench_seconds,
        )
        if identity is not None:
            provenance = {
                "source_model": args.model.name,
                "source_sha256": sha256_file(args.model),
                "quantizer": (
                    f"ground.quantize {report.mode}, per-channel {report.per_channel}, "
                    f"{report.activations} activations, int8 weights, MinMax calibration"
                ),
                "onnxruntime": report.onnxruntime_version,
            }
            if args.calib is not None:
                provenance["calibration"] = (
                    f"{args.calib.name} ({report.calib_samples} samples, sha256 {sha256_file(args.calib)})"
                )
            manifest = build_manifest(
                args.output,
                name=identity[0],
                version=identity[1],
                quantization="int8-qdq" if report.mode == "static-qdq" else "other",
                description=args.description,
                provenance=provenance,
            )
            path = write_manifest(manifest, args.output.parent)
            report = report.model_copy(update={"manifest_path": str(path)})
    except (QuantizationRefused, CalibrationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.model_dump()))
    else:
        _print_report(report)
    return 0


def quantize_main(argv: Sequence[str] | None = None) -> int:
    """``ground model quantize`` without the global options (``argv`` = its own arguments); returns
    the exit status."""
    parser = argparse.ArgumentParser(prog="ground model quantize", description=(quantize.__doc__ or "").splitlines()[0])
    add_quantize_arguments(parser)
    return cmd_model_quantize(parser.parse_args(list(argv) if argv is not None else None))


# ------------------------------------------------------------------------------------------------ upload


async def cmd_model_upload(args: argparse.Namespace) -> int:
    """``ground model upload FILE --name N --version V [--chunk-bytes B] [--window W] [--activate]``."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    size = Path(args.file).stat().st_size if Path(args.file).is_file() else 0
    console = Console(stderr=True)
    # connected, so that the checks before the first chunk see the limits flightd advertises in its status
    async with client_from_args(args) as client:
        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, transient=False,
        ) as bar:
            task = bar.add_task(f"{args.name}/{args.version}", total=size)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=min(size, done * args.chunk_bytes) if done < total else size)

            verdict = await upload_model(
                client, args.file, args.name, args.version, chunk_bytes=args.chunk_bytes, window=args.window,
                timeout_s=args.upload_timeout, progress=on_progress, quantization=args.quantization,
            )
    if verdict.state is not UploadState.INSTALLED:
        print(f"{args.name}/{args.version} {verdict.state.value}: {verdict.reason}", file=sys.stderr)
        return 1
    print(f"{args.name}/{args.version} installed on {args.sat} (upload {verdict.upload_id})")
    if args.activate:
        async with client_from_args(args) as ground:
            data = await ground.activate_model(args.name, args.version)
        _print_activated(data)
    return 0


def add_upload_parser(model_subparsers: Any) -> None:
    """Add ``upload`` to the ``ground model`` subcommands (``model_subparsers`` from add_subparsers)."""
    s = model_subparsers.add_parser("upload", help="send an ONNX model to the satellite (resumable, verified)")
    s.add_argument("file", type=Path, help="the .onnx file")
    s.add_argument("--name", required=True)
    s.add_argument("--version", required=True)
    s.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help="bytes per chunk (default 64 KiB)")
    s.add_argument("--window", type=int, default=32, help="chunks in flight awaiting the broker's PUBACK")
    s.add_argument("--quantization", default="fp32", choices=["fp32", "fp16", "int8-qdq", "other"])
    s.add_argument("--upload-timeout", type=float, default=3600.0, help="seconds for the whole upload")
    s.add_argument("--activate", action="store_true", help="activate the version once installed")
    s.set_defaults(handler=cmd_model_upload)


# ------------------------------------------------------------------------------------------- ground model


def add_model_parser(subparsers: Any) -> None:
    """Add ``model`` (list/activate/rollback/quantize/upload) to the ``ground`` command's subparsers."""
    model = subparsers.add_parser("model", help="onboard models").add_subparsers(dest="model_command", required=True)
    s = model.add_parser("list")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_model_list)
    s = model.add_parser("activate")
    s.add_argument("name")
    s.add_argument("version")
    s.set_defaults(handler=cmd_model_activate)
    s = model.add_parser("rollback")
    s.add_argument("name")
    s.set_defaults(handler=cmd_model_rollback)
    add_quantize_parser(model)
    add_upload_parser(model)
