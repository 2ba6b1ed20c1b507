"""A Trainer entry point that exports a model TF Serving cannot run, for the gate's e2e test.

It trains the CNN as tfsp.trainers.cnn.model does, then saves it the way our export did before it
tracked the Keras model's tf.Variables: TF2's loader (the Evaluator) runs the result, TF
Serving's load path fails every call (keras-team/keras#19274).
"""

from unittest import mock

from tfx import v1 as tfx

from tfsp.trainers import export
from tfsp.trainers.cnn import model as cnn


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """tfsp.trainers.cnn.model.run_fn with the export's variable tracking switched off."""
    with mock.patch.object(export, "_tensorflow_variables", lambda *models: []):
        cnn.run_fn(fn_args)
