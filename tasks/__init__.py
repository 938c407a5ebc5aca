"""Background work. `celery -A tasks worker|beat|flower` finds the app here."""
from tasks.celery_app import celery_app

app = celery_app
celery = celery_app

__all__ = ["app", "celery", "celery_app"]
