"""The inference handler on ONNX Runtime's CUDA provider against its CPU provider.

    python -m bench.gpu [--json PATH] [--providers cuda,cpu] [--model-event PATH]

For each provider and each batch size (1, 256 and 4096 feature vectors), the Elec2
vectors go through `InferenceHandler.handle_batch`: parse the vectors, run the model,
build the prediction events. The session's own `run` on the same batch is timed too.
A CUDA measurement fails, rather than falling back, unless the session really runs on
`CUDAExecutionProvider`.

The model is the Elec2 model after 2,000 rows; `--model-event` reads it from a file
written by `--write-model-event`, for machines without torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.harness import REPOSITORY
from bench.workload import build
from streamml.common.events import from_http, to_http_structured
from streamml.common.spec import load_spec
from streamml.inference.dedupe import RecentIds
from streamml.inference.handler import InferenceHandler

BATCH_SIZES = (1, 256, 4096)
PROVIDER_NAMES = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def default_csv() -> Path:
    from bench.__main__ import default_csv as csv

    return csv()


def model_event(spec_path: Path, workload, folder: Path):
    from bench.__main__ import trained_model

    return trained_model(spec_path, workload, folder)


def time_provider(spec, provider: str, model, vectors, repeats: int = 5) -> dict[str, dict[str, float]]:
    handler = InferenceHandler(spec, provider=provider)
    if not handler.load(model):
        raise RuntimeError(f"the {provider} handler did not load the model; see the log above")
    active = handler.model.provider
    if active != PROVIDER_NAMES[provider]:
        raise RuntimeError(f"expected {PROVIDER_NAMES[provider]}, but the session runs on {active}: check the CUDA libraries onnxruntime-gpu needs")
    figures = {}
    for size in BATCH_SIZES:
        batches = [vectors[start : start + size] for start in range(0, len(vectors) - size + 1, size)][:max(1, 8192 // size)]
        handler_times, session_times = [], []
        for _ in range(repeats):
            handler.emitted = RecentIds(len(vectors) + 1)
            started = time.perf_counter()
            for batch in batches:
                handler.handle_batch(batch)
            handler_times.append((time.perf_counter() - started) / sum(len(batch) for batch in batches))
            arrays = [np.asarray([event.get_data()["values"] for event in batch], dtype=np.float32) for batch in batches]
            started = time.perf_counter()
            for array in arrays:
                handler.model.run(array)
            session_times.append((time.perf_counter() - started) / sum(len(array) for array in arrays))
        figures[str(size)] = {
            "handler_events_per_s": round(1 / statistics.median(handler_times), 1),
            "session_rows_per_s": round(1 / statistics.median(session_times), 1),
        }
    return {"active_provider": active, "batch_sizes": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", default="cuda,cpu", help="Comma-separated: cuda, cpu (default: both).")
    parser.add_argument("--csv", default=str(default_csv()))
    parser.add_argument("--rows", type=int, default=20_000, help="Elec2 rows to make vectors from (default: 20000).")
    parser.add_argument("--model-event", help="Read the model event (structured JSON) from this file instead of training one.")
    parser.add_argument("--write-model-event", help="Write the model event to this file, then exit.")
    parser.add_argument("--json", help="Write the figures here.")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="streamml-gpu-"))
    document = yaml.safe_load((REPOSITORY / "examples" / "elec2.yaml").read_text())
    document["model"]["name"] = "elec2-bench"
    spec_path = folder / "bench.yaml"
    spec_path.write_text(yaml.safe_dump(document))
    spec = load_spec(spec_path)
    workload = build(spec, Path(args.csv), limit=args.rows)
    if args.model_event:
        [model] = from_http({"content-type": "application/cloudevents+json"}, Path(args.model_event).read_bytes())
    else:
        model = model_event(spec_path, workload, folder)
    if args.write_model_event:
        Path(args.write_model_event).write_bytes(to_http_structured(model)[1])
        return 0
    import onnxruntime

    figures = {"onnxruntime": onnxruntime.__version__, "device": onnxruntime.get_device(),
               "available_providers": onnxruntime.get_available_providers(), "providers": {}}
    status = 0
    for provider in args.providers.split(","):
        try:
            figures["providers"][provider] = time_provider(spec, provider, model, workload.vectors)
        except RuntimeError as error:
            figures["providers"][provider] = {"error": str(error)}
            print(f"{provider}: {error}", file=sys.stderr)
            status = 1
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
