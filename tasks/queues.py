"""The two queues, by cost (tasks/celery_app.py routes tasks to them). A module of its own so that
the app's configuration loads nothing else (beat and Flower load it: tasks/sender.py)."""

LIGHT, HEAVY = "light", "heavy"
