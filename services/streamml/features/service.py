"""The features service process: a faust worker over the raw topic."""

from __future__ import annotations

import threading

from streamml.common.settings import FeaturesSettings
from streamml.common.spec import load_spec


def run_features(settings: FeaturesSettings, stop: threading.Event) -> int:
    """Run the faust worker until SIGTERM or SIGINT; faust handles both signals itself."""
    from streamml.features.faust_app import FeaturesAppSettings
    from streamml.features.faust_app import run_features as run_worker

    spec = load_spec(settings.spec)
    app_settings = FeaturesAppSettings(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        app_id=settings.group_id,
        data_dir=settings.data_dir,
        partitions=settings.partitions,
        processing_guarantee=settings.processing_guarantee,
        loglevel=settings.log_level,
    )
    return run_worker(spec, app_settings)
