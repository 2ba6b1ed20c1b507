"""Beam options every Beam job of ours starts from (no TensorFlow or TFX import).

Beam's FnApiRunner in this process when the runner is given no other. Beam's default,
DirectRunner, first tries its Prism runner, which it downloads from GitHub at run time (Beam
2.77); FnApiRunner is what it falls back to, so naming it gives the same engine without the
download.

TFX's Beam steps (ImportExampleGen, StatisticsGen, Transform, Evaluator, our FeatureGen)
build a source package of TFX itself, for remote workers, into a new temporary folder every
time they run, unless a dependency option is set (tfx/utils/dependency_utils.py); nothing
deletes it. Measured 2026-12-05: 1.3 s and 52 MB a step, about 1 GB of /tmp per `make
run`. Workers in this process need no package, so the in-process options name a worker
image (which the in-process runner never reads) to say the dependencies are there.
"""

IN_PROCESS_BEAM_ARGS = (
    "--runner=FnApiRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
    "--sdk_container_image=unused-by-the-in-process-runner",
)
