"""The task layer: T5's text formats, label words, postprocessors and metrics attached to
data-layer Tasks (as seqio's Task does), and the built-in registrations.

Importing this package registers every built-in task and mixture (GLUE, SuperGLUE, the
pretraining corpora with each objective at its default arguments); look names up with
`get_task`, `get_mixture` or `get_task_or_mixture` from here.
"""
from t2t.data.registry import get_mixture, get_task, get_task_or_mixture  # noqa: F401
from t2t.tasks import glue, pretraining, superglue  # noqa: F401
