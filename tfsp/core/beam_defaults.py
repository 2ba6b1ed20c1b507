"""Beam options every Beam job of ours starts from (no TensorFlow or TFX import).

Beam's FnApiRunner in this process when the runner is given no other. Beam's default,
DirectRunner, first tries its Prism runner, which it downloads from GitHub at run time (Beam
2.77); FnApiRunner is what it falls back to, so naming it gives the same engine without the
download.
"""

IN_PROCESS_BEAM_ARGS = (
    "--runner=FnApiRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)
