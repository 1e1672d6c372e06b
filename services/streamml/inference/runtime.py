"""ONNX Runtime sessions: provider choice, artifact loading and the checks a model must pass to serve."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from streamml.common.errors import ModelRejectedError
from streamml.common.payloads import ModelArtifact

logger = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "onnxruntime is not installed: install streamml[cpu] (onnxruntime) or streamml[gpu] (onnxruntime-gpu)"
        ) from error
    return onnxruntime


def select_providers(requested: str = "auto") -> list[str]:
    """Return the execution providers to use: CUDA then CPU for `auto`, or exactly `cuda` / `cpu`."""
    available = _onnxruntime().get_available_providers()
    if requested == "auto":
        return [name for name in PREFERRED_PROVIDERS if name in available]
    provider = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}.get(requested)
    if provider is None:
        raise ValueError(f"unknown execution provider {requested!r}: use auto, cuda or cpu")
    if provider not in available:
        raise RuntimeError(
            f"execution provider {provider} is not available in this onnxruntime build (available: {available}); "
            "install streamml[gpu] on a machine with CUDA, or use auto or cpu"
        )
    return [provider, "CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [provider]


def read_artifact_bytes(artifact: ModelArtifact) -> bytes:
    """Return the ONNX bytes of an artifact, inline or from its file:// URI, after checking sha256."""
    if artifact.onnx_base64 is not None:
        data = base64.b64decode(artifact.onnx_base64, validate=True)
    elif artifact.uri is not None:
        parsed = urlparse(artifact.uri)
        if parsed.scheme != "file":
            raise ModelRejectedError(
                f"model {artifact.model_name} v{artifact.version}: URI scheme {parsed.scheme!r} is not supported; "
                "publish inline ONNX or a file:// URI on storage that inference can read"
            )
        try:
            data = Path(unquote(parsed.path)).read_bytes()
        except OSError as error:
            raise ModelRejectedError(
                f"model {artifact.model_name} v{artifact.version}: cannot read {artifact.uri}: {error}"
            ) from error
    else:
        raise ModelRejectedError(f"model {artifact.model_name} v{artifact.version} has neither onnx_base64 nor uri")
    digest = hashlib.sha256(data).hexdigest()
    if digest != artifact.sha256:
        raise ModelRejectedError(
            f"model {artifact.model_name} v{artifact.version}: sha256 {digest} does not match the published {artifact.sha256}"
        )
    return data


@dataclass(frozen=True)
class ServingModel:
    """A checked ONNX Runtime session together with the artifact it came from."""

    artifact: ModelArtifact
    session: object
    output_name: str
    provider: str

    @property
    def version(self) -> int:
        return self.artifact.version

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.artifact.input_name: batch})[0]


def load_model(
    artifact: ModelArtifact,
    *,
    feature_set: str,
    width: int,
    providers: list[str],
    intra_op_threads: int = 1,
) -> ServingModel:
    """Build a session for an artifact and check that it serves this pipeline's feature vectors.

    Raises ModelRejectedError when the bytes, the input name, the width or the
    outputs do not fit; the caller keeps serving its previous model.
    """
    name = f"model {artifact.model_name} v{artifact.version}"
    if artifact.feature_set != feature_set:
        raise ModelRejectedError(
            f"{name} was trained on feature set {artifact.feature_set}, but this pipeline computes {feature_set}; "
            "run training and inference with the same pipeline spec"
        )
    if len(artifact.feature_names) != width:
        raise ModelRejectedError(f"{name} lists {len(artifact.feature_names)} features, the pipeline computes {width}")
    data = read_artifact_bytes(artifact)
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types, all Exception subclasses
        raise ModelRejectedError(f"{name}: onnxruntime cannot load it: {type(error).__name__}: {error}") from error
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != artifact.input_name:
        found = [item.name for item in inputs]
        raise ModelRejectedError(f"{name}: expected one input named {artifact.input_name!r}, the graph has {found}")
    declared_width = inputs[0].shape[-1] if inputs[0].shape else None
    if isinstance(declared_width, int) and declared_width != width:
        raise ModelRejectedError(f"{name}: input width is {declared_width}, the pipeline computes {width} features")
    output_name = session.get_outputs()[0].name
    probe = np.zeros((2, width), dtype=np.float32)
    try:
        result = session.run([output_name], {artifact.input_name: probe})[0]
    except Exception as error:
        raise ModelRejectedError(f"{name}: a trial run on a zero batch failed: {error}") from error
    expected = (2, len(artifact.classes or ())) if artifact.task == "classification" else (2,)
    if tuple(result.shape) != expected:
        raise ModelRejectedError(f"{name}: output {output_name!r} has shape {tuple(result.shape)} for a batch of 2, expected {expected}")
    provider = session.get_providers()[0]
    return ServingModel(artifact=artifact, session=session, output_name=output_name, provider=provider)
