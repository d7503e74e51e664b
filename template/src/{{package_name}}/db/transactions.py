"""Deprecated: units of work are `@session.unit_of_work` now."""

from .legacy import serve

__getattr__ = serve(
    __name__,
    {
        "run_in_transaction": "decorate the method with db.session.unit_of_work",
        "translate_violation": "give the constraint info={'message': ...} in the model",
    },
    f"{__package__}.legacy",
)
