"""Built-in task registrations (importing this package registers them all)."""
from t2t.data.tasks import c4  # noqa: F401
from t2t.data.tasks import glue, superglue  # noqa: F401
